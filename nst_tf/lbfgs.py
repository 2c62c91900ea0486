"""Projected L-BFGS whose whole iteration runs in one TensorFlow graph.

SciPy's L-BFGS-B (``optimize.py``'s default L-BFGS) works on a float64 host copy of
the image and, at 512 px (786,432 pixels), spends more CPU per iteration outside the
network than a SqueezeNet value-and-gradient costs (~55 ms): its L-BFGS-B step in
float64 (Cauchy point, subspace minimization) ~48 ms, ~1.7 evaluations per iteration,
float64 conversions and copies, plus 1.5-3 s per ``minimize`` call of per-pixel bounds
handling in Python (see BENCHMARKS.md, ``time-to-quality``): ~150 ms per iteration in
all, against ~75 ms here.  This solver keeps everything in float32 on the
device: the two-loop recursion (Nocedal 1980; Nocedal and Wright, *Numerical
Optimization*, 2nd ed., Algorithm 7.4), a projection onto the box ``[lower, upper]``
and a weak Wolfe line search on the projected path (bisection, with doubling until the
step is bracketed, as in Lewis and Overton 2013), all inside one ``tf.function``
per iteration.  The first trial step is 1 (the quasi-Newton step) and usually passes,
so an iteration costs one value-and-gradient evaluation.  The curvature half of the
Wolfe conditions matters: with sufficient decrease alone, steps on this non-convex
objective often end with ``s . y <= 0`` and no correction pair can be stored.

Bounds follow the usual projected-quasi-Newton recipe (Bertsekas 1982; Kim, Sra and
Dhillon 2010): a pixel at a bound whose gradient points out of the box is held
fixed for the iteration (removed from the direction and from the gradient the
two-loop recursion sees), and every trial point is clipped into the box.
"""

import tensorflow as tf


class ProjectedLBFGS:
    """Box-constrained L-BFGS on a ``tf.Variable``, one compiled graph per iteration.

    Args:
        value_and_gradient: callable ``float32 tensor x -> (dict of float32 scalar losses
            with a "total" entry, float32 gradient shaped like x)``, traceable by
            ``tf.function`` (e.g. the Python function of
            :func:`nst_tf.optimize.make_value_and_gradient`).
        x0: float32 array or tensor, any shape; the start point (clipped into the box).
        memory: int >= 1. Correction pairs ``(s, y)`` kept (``m``).
        lower, upper: floats, the box; pixels use ``0`` and ``255``.
        max_line_search: int >= 0. Extra trial steps per iteration; when none lowered the
            objective enough the iteration stays where it was and forgets its corrections.
        armijo: float in (0, 1). Sufficient-decrease constant ``c1``.
        wolfe: float in (armijo, 1). Curvature constant ``c2`` of the weak Wolfe condition.
        first_step: float > 0. Largest change of any coordinate in the first iteration
            (units of x, pixels here), before any curvature is known.
        jit_compile: compile the iteration with XLA.

    Attributes:
        x: ``tf.Variable`` float32, the current point (always inside the box).
        evaluations: ``tf.Variable`` int32, value-and-gradient calls so far.

    Raises:
        ValueError: ``memory`` < 1 or ``max_line_search`` < 0.
    """

    def __init__(self, value_and_gradient, x0, memory=10, lower=0.0, upper=255.0, max_line_search=10,
                 armijo=1e-4, wolfe=0.9, first_step=1.0, jit_compile=False):
        if memory < 1 or max_line_search < 0:
            raise ValueError(f"memory must be >= 1 and max_line_search >= 0. Received: memory={memory}, "
                             f"max_line_search={max_line_search}")
        self.value_and_gradient = value_and_gradient
        self.memory, self.lower, self.upper = int(memory), float(lower), float(upper)
        self.max_line_search, self.first_step = int(max_line_search), float(first_step)
        self.armijo, self.wolfe = float(armijo), float(wolfe)
        x0 = tf.convert_to_tensor(x0, tf.float32)
        # Variables of unknown size: reset() moves the solver to another image size (coarse-to-fine)
        # without tracing and optimizing its graph again, which costs ~2 s per size.
        free_shape = tf.TensorShape([None] * x0.shape.rank)
        self.x = tf.Variable(x0, name="lbfgs_x", shape=free_shape)
        self.gradient = tf.Variable(x0, name="lbfgs_gradient", shape=free_shape)
        self.value = tf.Variable(0.0, name="lbfgs_value")
        self.s = tf.Variable(tf.zeros([self.memory] + x0.shape), name="lbfgs_s", shape=[self.memory] + free_shape)
        self.y = tf.Variable(tf.zeros([self.memory] + x0.shape), name="lbfgs_y", shape=[self.memory] + free_shape)
        # rho_i = 1 / (s_i . y_i); 0 marks an empty slot, which the two-loop recursion then skips.
        self.rho = tf.Variable(tf.zeros((self.memory,)), name="lbfgs_rho")
        self.newest = tf.Variable(-1, name="lbfgs_newest")  # Ring index of the latest pair.
        self.gamma = tf.Variable(0.0, name="lbfgs_gamma")  # H0 = gamma I (s.y / y.y); 0 before any pair.
        self.evaluations = tf.Variable(0, name="lbfgs_evaluations")  # Value-and-gradient calls so far.
        self._values = None
        self._start = tf.function(self._start_graph, jit_compile=jit_compile)
        self._step = tf.function(self._step_graph, jit_compile=jit_compile)
        self.reset(x0)

    def reset(self, x0):
        """Restarts from ``x0`` (any shape of the same rank), forgetting all corrections.

        The value-and-gradient function may have changed meaning in between (e.g. new
        targets at a new scale); the compiled iteration is reused.
        """
        x0 = tf.clip_by_value(tf.convert_to_tensor(x0, tf.float32), self.lower, self.upper)
        self.x.assign(x0)
        self.gradient.assign(tf.zeros_like(x0))
        self.s.assign(tf.zeros([self.memory] + x0.shape))
        self.y.assign(tf.zeros([self.memory] + x0.shape))
        self.rho.assign(tf.zeros_like(self.rho))
        self.newest.assign(-1)
        self.gamma.assign(0.0)
        self._started = False

    def start(self):
        """Evaluates the start point.

        Returns:
            ``(losses, finite)``: dict of float32 scalar tensors, and a bool scalar tensor,
            False when the value or the gradient there is NaN or infinite.
        """
        values, finite = self._start()
        if self._values is None:
            # The losses of the current point, kept for iterations that end where they began.
            self._values = {k: tf.Variable(v, name=f"lbfgs_{k}") for k, v in values.items()}
        else:
            for k, v in values.items():
                self._values[k].assign(v)
        self._started = True
        return values, finite

    def step(self):
        """One iteration: direction, projected line search, pair update.

        Returns:
            ``(losses, finite)``: dict of float32 scalar losses at the new point ``x``
            (unchanged, with the memory cleared, when no trial step lowered the objective
            enough), and a bool scalar tensor.  When no trial was accepted and the last
            one had a non-finite value or gradient, ``finite`` is False, ``losses`` are
            that trial's and ``x`` is still the last finite point; the caller decides.
        """
        if not self._started:
            self.start()
        return self._step()

    def _start_graph(self):
        values, gradient = self.value_and_gradient(self.x)
        self.evaluations.assign_add(1)
        self.gradient.assign(gradient)
        self.value.assign(values["total"])
        return values, _finite(values, gradient)

    def _free(self, x, g):
        # Coordinates at a bound whose descent direction points outside stay put this iteration.
        held = ((x <= self.lower) & (g > 0)) | ((x >= self.upper) & (g < 0))
        return tf.cast(~held, tf.float32)

    def _direction(self, q):
        return _two_loop(q, self.s, self.y, self.rho, self.gamma, self.newest, self.memory)

    def _step_graph(self):
        x, g, f = self.x.read_value(), self.gradient.read_value(), self.value.read_value()
        free = self._free(x, g)
        q = g * free
        have_pairs = self.gamma > 0
        first = -q * (self.first_step / tf.maximum(tf.reduce_max(tf.abs(q)), 1e-30))
        d = tf.cond(have_pairs, lambda: self._direction(q) * free, lambda: first)
        slope = tf.reduce_sum(g * d)
        # A direction that is not downhill (possible once projection has bent the pairs): scaled gradient.
        d = tf.where(slope < 0, d, first)

        def trial(t):
            x_new = tf.clip_by_value(x + t * d, self.lower, self.upper)
            values, grad = self.value_and_gradient(x_new)
            with tf.control_dependencies([self.evaluations.assign_add(1)]):
                return x_new, values, tf.identity(grad)

        def judge(x_new, values, grad):
            # Weak Wolfe conditions along the projected path (s = x_new - x): sufficient decrease, and
            # enough curvature for s.y > 0, so that the pair can be stored.  NaN compares False.
            s = x_new - x
            slope = tf.reduce_sum(g * s)
            decrease = _finite(values, grad) & (values["total"] <= f + self.armijo * slope)
            return decrease, tf.reduce_sum(grad * s) >= self.wolfe * slope

        def searching(t, low, high, point, best, tries):
            decrease, curvature = judge(*point)
            return ~(decrease & curvature) & (tries < self.max_line_search)

        def next_trial(t, low, high, point, best, tries):
            # Bisection on [low, high], doubling while no upper end is known (Lewis and Overton 2013).
            decrease, _ = judge(*point)
            low, high = tf.where(decrease, t, low), tf.where(decrease, high, t)
            best = tf.nest.map_structure(lambda new, old: tf.where(decrease, new, old), point, best)
            t = tf.where(tf.math.is_inf(high), 2.0 * t, 0.5 * (low + high))
            return t, low, high, trial(t), best, tries + 1

        point = trial(tf.constant(1.0))
        best = tf.nest.map_structure(tf.zeros_like, point)  # A point with sufficient decrease, if any.
        _, low, _, point, best, _ = tf.while_loop(
            searching, next_trial, (tf.constant(1.0), tf.constant(0.0), tf.constant(float("inf")), point, best,
                                    tf.constant(0)))
        decrease, _ = judge(*point)
        accepted = decrease | (low > 0)  # The last trial, or else the last one that lowered f enough.
        x_new, values, grad = tf.cond(decrease, lambda: point, lambda: best)
        # Not finite: no trial was accepted and the last one had a NaN or infinite value or gradient.
        finite = accepted | _finite(point[1], point[2])

        def accept():
            s, y = x_new - x, grad - g
            sy, yy = tf.reduce_sum(s * y), tf.reduce_sum(y * y)

            def store():
                slot = (self.newest + 1) % self.memory
                return tf.group(self.s.scatter_update(tf.IndexedSlices(s[None], slot[None])),
                                self.y.scatter_update(tf.IndexedSlices(y[None], slot[None])),
                                self.rho.scatter_update(tf.IndexedSlices((1.0 / sy)[None], slot[None])),
                                self.newest.assign(slot),
                                self.gamma.assign(sy / yy))

            # Curvature condition s.y > 0 keeps H positive definite; skip pairs that break it.
            update = tf.cond(sy > 1e-10 * yy, store, tf.no_op)
            with tf.control_dependencies([update]):
                return tf.group(self.x.assign(x_new), self.gradient.assign(grad),
                                self.value.assign(values["total"]),
                                *[self._values[k].assign(v) for k, v in values.items()])

        def reject():
            return tf.group(self.rho.assign(tf.zeros_like(self.rho)), self.gamma.assign(0.0))

        with tf.control_dependencies([tf.cond(accepted, accept, reject)]):
            # A finite failure reports the (unchanged) current point; a non-finite one the last trial's values.
            return {k: tf.where(finite, self._values[k].read_value(), v) for k, v in point[1].items()}, finite


def _finite(values, gradient):
    # A sum is non-finite when any term is: one pass over the gradient instead of an all-reduce.
    return tf.math.is_finite(values["total"]) & tf.math.is_finite(tf.reduce_sum(gradient))


def _two_loop(q, s_all, y_all, rho_all, gamma, newest, memory):
    """Two-loop recursion: ``-H q`` with the stored pairs, newest first.

    Not XLA-compiled on its own: that halves its ~10 ms at 512 px but costs ~0.6 s of
    compilation at every new image size.
    """
    # Row reads (ResourceGather), not slices of the whole [m, ...] variable, which copy all of it.
    order = [(newest - i) % memory for i in range(memory)]
    s = [tf.gather(s_all, j) for j in order]
    y = [tf.gather(y_all, j) for j in order]
    rho = [tf.gather(rho_all, j) for j in order]
    alphas = []
    for s_j, y_j, rho_j in zip(s, y, rho):
        alpha = rho_j * tf.reduce_sum(s_j * q)
        q = q - alpha * y_j
        alphas.append(alpha)
    r = gamma * q
    for s_j, y_j, rho_j, alpha in reversed(list(zip(s, y, rho, alphas))):
        beta = rho_j * tf.reduce_sum(y_j * r)
        r = r + (alpha - beta) * s_j
    return -r
