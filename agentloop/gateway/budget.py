"""A run's token and cost budget, counted by the gateway call by call.

The budget is in the run's config snapshot: `token_budget` (input + output
tokens, cached input included) and `cost_budget_usd`; either may be absent.
Each call adds its usage to Run.input_tokens / output_tokens / cost_usd with
one F() UPDATE, so concurrent calls of a run never lose a count. A call is
refused once the run has used its budget, and the run then ends: failed, exit
reason "budget". The call that crosses the line is answered (its tokens are
spent already) and ends the run right after.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.db.models import F

from agentloop.runs import lifecycle
from agentloop.runs.models import IllegalTransition, Run, RunStatus

EXIT_REASON = "budget"


def add_usage(run: Run, input_tokens: int, output_tokens: int, cost_usd: Decimal) -> None:
    Run.objects.filter(pk=run.pk).update(
        input_tokens=F("input_tokens") + input_tokens,
        output_tokens=F("output_tokens") + output_tokens,
        cost_usd=F("cost_usd") + cost_usd.quantize(Decimal("0.000001")),
    )


def _limit(config: dict, name: str, kind):
    value = config.get(name)
    if value in (None, "") or isinstance(value, bool):
        return None
    try:
        limit = kind(str(value)) if kind is Decimal else kind(value)
    except (TypeError, ValueError, InvalidOperation):
        return None
    return limit if limit > 0 else None


def exceeded(run: Run, *, reload: bool = True) -> str:
    """Why the run is past its budget (its stored counters), or "" when it is not.

    reload=False trusts the counters on `run`, for a run loaded just now (the
    admission check: one query fewer before the first byte).
    """
    config = run.config or {}
    if reload:
        used = (
            Run.objects.filter(pk=run.pk).values("input_tokens", "output_tokens", "cost_usd").get()
        )
    else:
        used = {
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "cost_usd": run.cost_usd,
        }
    tokens = used["input_tokens"] + used["output_tokens"]
    token_budget = _limit(config, "token_budget", int)
    if token_budget is not None and tokens >= token_budget:
        return f"The run has used {tokens:,} tokens of its budget of {token_budget:,}."
    cost_budget = _limit(config, "cost_budget_usd", Decimal)
    if cost_budget is not None and used["cost_usd"] >= cost_budget:
        return f"The run has spent ${used['cost_usd']:.4f} of its budget of ${cost_budget:.2f}."
    return ""


def end_run(run: Run, why: str) -> bool:
    """Stop the run and fail it with exit reason "budget"; False if it had ended already."""
    run.request_stop()
    for _ in range(3):  # someone else may move it meanwhile (the runner, waiting ↔ running)
        run.refresh_from_db()
        if run.is_terminal:
            return False
        try:
            if lifecycle.move(run, RunStatus.FAILED, detail=why, exit_reason=EXIT_REASON):
                return True
        except IllegalTransition:
            return False
    return False


def ended_for_budget(run: Run) -> bool:
    return run.status == RunStatus.FAILED and run.exit_reason == EXIT_REASON
