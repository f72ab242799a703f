"""Hello, Slipway: a workflow you can run, watch and debug.

Run it from the Workflows tab. Set a breakpoint in any step and attach a debugger (see the
README's Debugging section) to stop there.
"""

from slipway.sdk import Param, Workflow, shell

workflow = Workflow(
    description="Greets someone, counts in parallel, and says goodbye.",
    params={
        "name": Param(str, default="world", help="Who to greet"),
        "count": Param(int, default=3, help="How far each counter counts"),
        "fail": Param(bool, default=False, help="Make the last step fail, to see on_failure run"),
    },
)


@workflow.step()
def greet(ctx):
    ctx.log(f"greeting {ctx.params['name']}")
    return f"Hello, {ctx.params['name']}!"


# These two only need `greet`, so they run at the same time.
@workflow.step(after=[greet], timeout=60)
def count_up(ctx, greet):
    out = shell(f"for i in $(seq 1 {ctx.params['count']}); do echo up $i; sleep 0.2; done")
    return len(out.stdout.splitlines())


@workflow.step(after=[greet], retries=2, retry_delay=1)
def count_down(ctx, greet):
    print(f"{greet} counting down from {ctx.params['count']}")
    return list(range(ctx.params["count"], 0, -1))


@workflow.step(after=[count_up, count_down])
def goodbye(ctx, count_up, count_down):
    if ctx.params["fail"]:
        raise RuntimeError("asked to fail")
    return {"lines": count_up, "countdown": count_down}


@workflow.on_failure
def tidy_up(ctx):
    ctx.log(f"{ctx.failure['step']} failed ({ctx.failure['error']}); finished: {sorted(ctx.outputs)}")
