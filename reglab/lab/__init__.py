"""The lab: recipes, runs, studies and the ``reglab`` command.

The lab is the only part of reglab that knows Recipes, studies and the command line; it builds
the library's pieces from a Recipe (``reglab.lab.build``) and imports the library downward.
The library (``reglab.optim``, ``reglab.regularize``, ``reglab.augment``, ``reglab.models``,
``reglab.data``, ``reglab.train``) never imports it.
"""
