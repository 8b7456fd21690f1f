"""calculator: safe arithmetic by walking the AST (no eval)."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any, ClassVar

from chat.tools.base import Tool, ToolContext, ToolError, ToolOutput
from chat.tools.registry import register

Number = int | float

MAX_EXPRESSION_CHARS = 1000
MAX_EXPONENT = 10_000
MAX_INT_DIGITS = 1000
MAX_NODES = 500
_INT_LIMIT = 10**MAX_INT_DIGITS

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "floor": math.floor,
    "ceil": math.ceil,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "min": min,
    "max": max,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _check_size(value: Number) -> Number:
    if isinstance(value, int) and abs(value) >= _INT_LIMIT:
        raise ToolError("Result too large.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("Result is not a finite number.")
    return value


def _power(base: Number, exponent: Number) -> Number:
    if abs(exponent) > MAX_EXPONENT:
        raise ToolError("Exponent too large.")
    # |base|^exponent with > MAX_INT_DIGITS digits is refused before computing it.
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent > 0
        and abs(base) > 1
        and exponent * math.log10(abs(base)) >= MAX_INT_DIGITS
    ):
        raise ToolError("Result too large.")
    try:
        result = base**exponent
    except OverflowError as exc:
        raise ToolError("Result too large.") from exc
    if isinstance(result, complex):
        raise ToolError("Result is not a real number.")
    return result


def _evaluate(node: ast.AST) -> Number:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return _check_size(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _evaluate(node.operand)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            return _check_size(_power(left, right))
        function = _BINARY.get(type(node.op))
        if function is None:
            raise ToolError(f"Unsupported operator {type(node.op).__name__}.")
        try:
            return _check_size(function(left, right))
        except ZeroDivisionError as exc:
            raise ToolError("Division by zero.") from exc
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        function = _FUNCTIONS.get(node.func.id)
        if function is None:
            raise ToolError(f"Unknown function '{node.func.id}'.")
        arguments = [_evaluate(arg) for arg in node.args]
        try:
            return _check_size(function(*arguments))
        except (TypeError, ValueError, OverflowError) as exc:
            raise ToolError(f"Invalid call to {node.func.id}: {exc}.") from exc
    raise ToolError("Unsupported expression: only numbers, + - * / // % **, parentheses and math functions.")


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression; raises ToolError for anything else."""
    text = expression.replace("^", "**").strip()
    if not text:
        raise ToolError("Empty expression.")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ToolError("Expression too long.")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"Invalid expression: {exc.msg}.") from exc
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ToolError("Expression too complex.")
    result = _evaluate(tree)
    if isinstance(result, float) and result.is_integer() and abs(result) < 1e15:
        return int(result)
    return result


@register
class Calculator(Tool):
    name = "calculator"
    description = (
        "Evaluate an arithmetic expression exactly: + - * / // % ** (or ^), parentheses, unary minus, "
        "constants pi/e/tau and sqrt, abs, round, floor, ceil, log, log10, log2, exp, sin, cos, tan, min, max."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "expression": {"type": "string", "minLength": 1, "maxLength": MAX_EXPRESSION_CHARS},
        },
        "required": ["expression"],
        "additionalProperties": False,
    }

    async def run(self, ctx: ToolContext, **arguments: Any) -> ToolOutput:
        expression = str(arguments["expression"])
        return {"expression": expression, "result": evaluate(expression)}
