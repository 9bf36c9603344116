"""Independent NumPy float64 implementations of TECHNIQUES.md section 3, step by step."""

import numpy as np


def run(update, w0, grad_fn, steps):
    """Iterate ``w, state = update(w, g, state, t)`` from ``w0`` with ``g = grad_fn(w, t)``."""
    w, state = w0.copy(), {}
    for t in range(1, steps + 1):
        w, state = update(w, grad_fn(w, t), state, t)
    return w


def sgd(lr):
    return lambda w, g, s, t: (w - lr * g, s)


def momentum(lr, beta):  # a <- beta a + g ; W <- W - lr a
    def update(w, g, s, t):
        a = beta * s.get("a", 0.0) + g
        return w - lr * a, {"a": a}

    return update


def adagrad(lr, eps, eps_in_sqrt):
    def update(w, g, s, t):
        G = s.get("G", 0.0) + g**2
        denom = np.sqrt(G + eps) if eps_in_sqrt else np.sqrt(G) + eps
        return w - lr * g / denom, {"G": G}

    return update


def adadelta(lr, rho, eps):  # Zeiler 2012
    def update(w, g, s, t):
        Eg2 = rho * s.get("Eg2", 0.0) + (1 - rho) * g**2
        Edx2 = s.get("Edx2", 0.0)
        delta = -np.sqrt(Edx2 + eps) / np.sqrt(Eg2 + eps) * g
        Edx2 = rho * Edx2 + (1 - rho) * delta**2
        return w + lr * delta, {"Eg2": Eg2, "Edx2": Edx2}

    return update


def rmsprop(lr, gamma, eps, eps_in_sqrt):
    def update(w, g, s, t):
        G = gamma * s.get("G", 0.0) + (1 - gamma) * g**2
        denom = np.sqrt(G + eps) if eps_in_sqrt else np.sqrt(G) + eps
        return w - lr * g / denom, {"G": G}

    return update


def adam(lr, b1, b2, eps, course):
    def update(w, g, s, t):
        m = b1 * s.get("m", 0.0) + (1 - b1) * g
        v = b2 * s.get("v", 0.0) + (1 - b2) * g**2
        if course:  # W <- W - lr sqrt(1 - b2^t)/(1 - b1^t) m / sqrt(v + eps)
            step = lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / np.sqrt(v + eps)
        else:
            m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
            step = lr * m_hat / (np.sqrt(v_hat) + eps)
        return w - step, {"m": m, "v": v}

    return update


def adamw(lr, b1, b2, eps, wd):
    inner = adam(lr, b1, b2, eps, course=False)

    def update(w, g, s, t):
        w_adam, s = inner(w, g, s, t)
        return w_adam - lr * wd * w, s

    return update


def adam_uncorrected(lr, b1, b2, eps, eps_in_sqrt):  # W <- W - lr m / (sqrt(v) + eps), no m-hat, v-hat
    def update(w, g, s, t):
        m = b1 * s.get("m", 0.0) + (1 - b1) * g
        v = b2 * s.get("v", 0.0) + (1 - b2) * g**2
        denom = np.sqrt(v + eps) if eps_in_sqrt else np.sqrt(v) + eps
        return w - lr * m / denom, {"m": m, "v": v}

    return update
