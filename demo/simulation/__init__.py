"""A living market, entered here: `simulate` runs supply, demand, agents and
faults through the exchange's real services and Celery tasks on a step clock
and reports what happened (demo/management/commands/simulate.py).

world.py makes the cast (providers in the national hubs, buyers, the subsidy
authority); agents.py is the fast in-process model of the node agents and
their faults; behaviour.py is what people do each step (order, pay, re-price,
claim); driver.py is the loop; report.py the figures, invariants and charts;
counters.py lets the loop wait for a real worker; feed.py is the live market
behind `make demo`.
Outside this package, import only the names listed in `__all__`."""

from demo.simulation.agents import simulated_agent_argv
from demo.simulation.driver import Beat, EagerTasks, Options, WorkerTasks, settings_apply, simulate
from demo.simulation.feed import MarketFeed
from demo.simulation.report import Report, report_build, report_html, report_print

__all__ = [
    "Beat",
    "EagerTasks",
    "MarketFeed",
    "Options",
    "Report",
    "WorkerTasks",
    "report_build",
    "report_html",
    "report_print",
    "settings_apply",
    "simulate",
    "simulated_agent_argv",
]
