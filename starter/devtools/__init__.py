"""Developer tooling: the embedded dev stack, its demo data, the Temporal binaries and the simulator."""

from starter.devtools.binaries import register_search_attributes, temporal_cli_path, test_server_path
from starter.devtools.demo import DEMO_ENROLLMENTS, DEMO_PRODUCTS, seed_demo
from starter.devtools.scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from starter.devtools.simulation import SimulationError, main_simulate, run_scenario
from starter.devtools.simulation_result import SimulationResult
from starter.devtools.stack import DevConfig, DevStack, free_port
from starter.devtools.state import DevStackError

__all__ = [
    "DEMO_ENROLLMENTS",
    "DEMO_PRODUCTS",
    "DevConfig",
    "DevStack",
    "DevStackError",
    "Scenario",
    "ScenarioError",
    "SimulationError",
    "SimulationResult",
    "free_port",
    "load_scenario",
    "main_simulate",
    "parse_scenario",
    "register_search_attributes",
    "run_scenario",
    "seed_demo",
    "temporal_cli_path",
    "test_server_path",
]
