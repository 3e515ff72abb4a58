"""SymPy helpers: prove a derivation symbolically, then hold it against the toolkit's kernel at a few points.

Two checks, both required for a derivation the kernels rely on:

* symbolic: ``simplify((a - b).rewrite(exp)) == 0``. ``Expr.equals`` may answer None and is never
  trusted alone; rewriting in exponentials lets simplify cancel tanh/sigmoid forms.
* numeric: evaluate the SymPy expression at a few points and compare with what the toolkit kernel
  computed there (``spot``), within a stated tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import sympy as sp
from sympy.calculus.util import function_range


class DerivationError(AssertionError):
    """A derivation a topic relies on does not hold (a bug in the topic, not an erratum of the notes)."""


def identical(a: Any, b: Any) -> bool:
    """a and b are the same expression (elementwise for matrices): simplify((a - b).rewrite(exp)) == 0."""
    if isinstance(a, sp.MatrixBase) or isinstance(b, sp.MatrixBase):
        a, b = sp.Matrix(a), sp.Matrix(b)
        if a.shape != b.shape:
            return False
        return all(identical(x, y) for x, y in zip(a, b))
    difference = defined(a) - defined(b)  # σ written out, Derivative(...) carried out
    if difference == 0:
        return True
    if _nonzero_somewhere(difference):
        return False  # a counterexample proves it at once; simplify would labour over it for seconds
    return sp.simplify(difference.rewrite(sp.exp)) == 0


def _nonzero_somewhere(expr: sp.Expr) -> bool:
    """expr evaluated to 30 digits at a few rational points is clearly not 0 (a proof of non-identity)."""
    indexed = expr.atoms(sp.Indexed)
    labels = {i.base.label for i in indexed}
    variables = sorted((s for s in expr.free_symbols if s not in labels and not isinstance(s, sp.Indexed)), key=str)
    variables += sorted(indexed, key=str)
    for trial in range(3):
        point = {v: sp.Rational(3 + 2 * ((k + trial) % 5), 11) for k, v in enumerate(variables)}  # in (0.27, 1.1)
        try:
            value = expr.subs(point).evalf(30)
        except (TypeError, ValueError, ZeroDivisionError):
            return False
        if value.is_number and value.is_finite and abs(value) > 1e-20:
            return True
    return False


@dataclass
class SpotCheck:
    """SymPy's value against the kernel's at each point."""

    points: list[dict[str, float]]
    symbolic: list[float]
    kernel: list[float]
    atol: float
    rtol: float
    dtype: str = "float64"  # what the kernel computed in: sets what "rounding level" means

    @property
    def ok(self) -> bool:
        s, k = np.asarray(self.symbolic), np.asarray(self.kernel)
        return bool(np.all(np.abs(s - k) <= self.atol + self.rtol * np.abs(s)))

    @property
    def largest_difference(self) -> float:
        return max(abs(a - b) for a, b in zip(self.symbolic, self.kernel))

    def difference_text(self) -> str:
        """The largest |difference| as shown on screen, the same on every machine (see difference_text)."""
        return difference_text(self.largest_difference, max(abs(v) for v in self.symbolic), self.dtype)

    def as_json(self) -> dict:
        return {"points": self.points, "symbolic": self.symbolic, "kernel": self.kernel,
                "atol": self.atol, "rtol": self.rtol, "dtype": self.dtype, "ok": self.ok}


ROUNDING_ULPS = 64  # a chain of a few dozen roundings stays below this many units in the last place


def rounding_bound(scale: float, dtype: str) -> float:
    """The power of ten above ROUNDING_ULPS units in the last place of a value of size ``scale`` (>= 1)."""
    eps = float(np.finfo(np.dtype(dtype)).eps)
    return float(10.0 ** np.ceil(np.log10(ROUNDING_ULPS * eps * max(scale, 1.0))))


def difference_text(difference: float, scale: float, dtype: str) -> str:
    """A |difference| between two computations of values of size ``scale``, the same text on every machine.

    At rounding level it is shown as a bound, not as its digits: those digits are the last bits of a
    kernel's result, and they change with the GEMM kernel OpenBLAS picks for the CPU (1.1e-16 on SkylakeX,
    0 on Haswell, for the same product). Beyond rounding level the number itself is shown.
    """
    bound = rounding_bound(scale, dtype)
    return f"< {bound:.0e}, {dtype} rounding" if abs(difference) < bound else f"{abs(difference):.1e}"


@dataclass
class Derivation:
    title: str
    lhs: Any
    rhs: Any
    spot: SpotCheck | None
    note: str = ""
    steps: list[Any] = field(default_factory=list)  # optional intermediate forms, shown between lhs and rhs

    def as_json(self) -> dict:
        return {"title": self.title, "latex": f"{sp.latex(self.lhs)} = {sp.latex(self.rhs)}",
                "lhs_latex": sp.latex(self.lhs), "rhs_latex": sp.latex(self.rhs),
                "steps_latex": [sp.latex(s) for s in self.steps], "symbolic_identity": True,
                "spot_check": self.spot.as_json() if self.spot else None, "note": self.note}


def spot_check(expr: Any, variables: Sequence[sp.Symbol], points: Iterable[Sequence[float]], kernel_values: Any,
               *, fixed: Mapping[sp.Symbol, float] | None = None, atol: float = 1e-12, rtol: float = 1e-9) -> SpotCheck:
    """expr evaluated by SymPy at each point (values of ``variables``), against ``kernel_values``.

    A matrix expr gives one value per entry at each point (row-major), so ``kernel_values`` then holds
    len(points) * expr's size numbers.
    """
    fixed = dict(fixed or {})
    computed = np.asarray(kernel_values)
    dtype = "float32" if computed.dtype == np.float32 else "float64"
    kernel = [float(v) for v in computed.astype(np.float64).ravel()]
    pts, sym = [], []
    for point in points:
        subs = {**fixed, **dict(zip(variables, point))}
        value = defined(expr).subs(subs)
        entries = list(value) if isinstance(value, sp.MatrixBase) else [value]
        sym.extend(float(sp.N(e, 30)) for e in entries)
        pts.append({str(k): float(v) for k, v in subs.items()})
    if len(sym) != len(kernel):
        raise DerivationError(f"spot check: {len(sym)} SymPy values but {len(kernel)} kernel values")
    return SpotCheck(pts, sym, kernel, atol, rtol, dtype)


# σ as an undefined function keeps formulas short on screen; ``defined`` writes it out for the checks.
sigma = sp.Function("sigma")
_t = sp.Symbol("t", real=True)
SIGMOID = sp.Lambda(_t, 1 / (1 + sp.exp(-_t)))


def defined(expr: Any) -> Any:
    """expr with σ(·) replaced by 1/(1 + e^(−·)), and unevaluated derivatives carried out."""
    expr = sp.sympify(expr)
    return (expr.replace(sigma, SIGMOID) if expr.has(sigma) else expr).doit()


def derive(title: str, lhs: Any, rhs: Any, spot: SpotCheck | None, *, note: str = "",
           steps: Sequence[Any] = ()) -> Derivation:
    """A checked derivation: lhs and rhs identical (σ written out), and the kernel agreeing at the points."""
    if not identical(lhs, rhs):
        raise DerivationError(f"{title}: {sp.sstr(lhs)} and {sp.sstr(rhs)} are not identical")
    if spot is not None and not spot.ok:
        raise DerivationError(f"{title}: the kernel disagrees with SymPy: kernel {spot.kernel} vs {spot.symbolic}")
    return Derivation(title, lhs, rhs, spot, note, list(steps))


# ---------------------------------------------------------------------- ranges
def symbolic_range(expr: Any, x: sp.Symbol, domain: sp.Set = sp.S.Reals) -> sp.Set:
    """The set of values of expr(x) for x in domain; Piecewise (and Max/Min) piece by piece.

    SymPy's function_range cannot take a Piecewise, so each piece is ranged over the part of the
    domain where its condition holds (and no earlier condition did).
    """
    expr = sp.sympify(expr)
    if expr.has(sp.Max, sp.Min):
        expr = expr.rewrite(sp.Piecewise)
    if isinstance(expr, sp.Piecewise):
        values: sp.Set = sp.S.EmptySet
        remaining = domain
        for piece, condition in expr.args:
            where = sp.Intersection(remaining, condition.as_set() if condition is not sp.true else sp.S.Reals)
            remaining = sp.Complement(remaining, where)
            if where is sp.S.EmptySet:
                continue
            values = sp.Union(values, symbolic_range(piece, x, where))
        return values
    if not expr.has(x):
        return sp.FiniteSet(expr) if domain is not sp.S.EmptySet else sp.S.EmptySet
    return function_range(expr, x, domain)


def kernel_within(values: Any, s: sp.Set, *, slack: float = 0.0) -> bool:
    """Every kernel value lies in the closure of the set s (floating point saturates at open ends)."""
    closure = s.closure
    lo, hi = float(closure.inf), float(closure.sup)
    v = np.asarray(values, dtype=np.float64)
    if not (np.all(v >= lo - slack) and np.all(v <= hi + slack)):
        return False
    if isinstance(closure, sp.FiniteSet):
        allowed = np.array([float(a) for a in closure])
        return bool(np.all(np.min(np.abs(v[..., None] - allowed), axis=-1) <= slack))
    return True
