"""Setup Assistant's transition table: every move a device makes is in it, and no other move is possible.

Also the device package's layering: machine (state, keys, signing) at the bottom, the flows above it,
drivers and stores on top, with no import going upward and none hidden inside a function.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest
from device_stack import Stack

from simulator.device import phases, setup_assistant
from simulator.device.phases import (
    POST_ENROLLMENT_ORDER,
    PRE_ACTIVATION_PANES,
    TRANSITIONS,
    Event,
    Pane,
    Phase,
    SetupAssistantError,
    Step,
    move,
    step_of,
)


@dataclass
class Position:
    phase: str = Phase.SETUP.value
    pane: str = Pane.HELLO.value


def at(step: Step) -> Position:
    """A position on ``step``."""
    return {
        Step.PRE_ACTIVATION: Position(),
        Step.ACTIVATION: Position(pane="Activation"),
        Step.REMOTE_MANAGEMENT: Position(pane="RemoteManagement"),
        Step.AUTHENTICATION: Position(pane="Authentication"),
        Step.ENROLLMENT: Position(pane="Enrollment"),
        Step.AWAITING_CONFIGURATION: Position("awaiting_configuration", "AwaitingConfiguration"),
        Step.LOCAL_PANES: Position(pane="Passcode"),
        Step.HOME: Position("home", "HomeScreen"),
    }[step]


def test_every_step_and_event_is_in_the_table_and_every_step_is_reachable() -> None:
    assert {event for _, event in TRANSITIONS} == set(Event)
    reached, frontier = {Step.PRE_ACTIVATION}, [Step.PRE_ACTIVATION]
    while frontier:
        here = frontier.pop()
        for (start, _), end in TRANSITIONS.items():
            if start == here and end not in reached:
                reached.add(end)
                frontier.append(end)
    assert reached == set(Step)
    for step in Step:
        assert step_of(at(step).phase, at(step).pane) is step


@pytest.mark.parametrize("step", list(Step))
@pytest.mark.parametrize("event", list(Event))
def test_a_move_happens_exactly_when_the_table_lists_it(step: Step, event: Event) -> None:
    position = at(step)
    target = TRANSITIONS.get((step, event))
    pane = "Passcode" if target is Step.LOCAL_PANES else None
    if target is None:
        with pytest.raises(SetupAssistantError, match=rf"a device on {position.pane} \({step}\) cannot {event}"):
            move(position, event, pane)
        assert position == at(step)  # nothing changed
    else:
        move(position, event, pane)
        assert step_of(position.phase, position.pane) is target


def test_the_phase_follows_the_step() -> None:
    position = at(Step.ENROLLMENT)
    move(position, Event.ENROLLED_AWAITING)
    assert (position.phase, position.pane) == ("awaiting_configuration", "AwaitingConfiguration")
    move(position, Event.DEVICE_CONFIGURED, "Privacy")
    assert (position.phase, position.pane) == ("setup", "Privacy")
    move(position, Event.SETUP_COMPLETE)
    assert (position.phase, position.pane) == ("home", "HomeScreen")
    move(position, Event.ERASE)
    assert (position.phase, position.pane) == ("setup", "Hello")
    assert type(position.phase) is str and type(position.pane) is str  # JSON and SQLite see plain text


def test_a_pane_must_belong_to_the_step_it_moves_to() -> None:
    with pytest.raises(SetupAssistantError, match="Passcode is not a pane of pre-activation"):
        move(Position(), Event.SHOW_PANE, "Passcode")
    with pytest.raises(SetupAssistantError, match="must name the pane"):
        move(at(Step.ACTIVATION), Event.ACTIVATED_UNMANAGED)
    position = at(Step.ACTIVATION)
    move(position, Event.ACTIVATED_UNMANAGED, Pane.HOME_SCREEN)  # a device with no local pane
    assert (position.phase, position.pane) == ("setup", "HomeScreen")
    assert step_of(position.phase, position.pane) is Step.LOCAL_PANES
    assert set(PRE_ACTIVATION_PANES).isdisjoint(POST_ENROLLMENT_ORDER)


def test_a_real_enrollment_only_makes_moves_of_the_table(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Step, Event]] = []
    real_move = phases.move

    def recording_move(state: phases.Position, event: Event, pane: str | None = None) -> None:
        seen.append((step_of(state.phase, state.pane), event))
        real_move(state, event, pane)

    monkeypatch.setattr(setup_assistant, "move", recording_move)
    device = stack.new_device()
    stack.define_profile([device.serial], await_device_configured=True)
    driver = stack.driver()
    assert driver.run_until_home(device) == "awaiting_configuration"
    stack.command(device.udid, "DeviceConfigured")
    driver.run_agent(device)
    assert device.phase == "home" and device.pane == "HomeScreen"
    assert all(move in TRANSITIONS for move in seen)
    events = [event for _, event in seen]
    for event in (Event.CONNECTED, Event.ACTIVATED_MANAGED, Event.MANAGEMENT_ACCEPTED, Event.ENROLLED_AWAITING,
                  Event.DEVICE_CONFIGURED, Event.SETUP_COMPLETE):  # fmt: skip
        assert event in events


# -- layering ------------------------------------------------------------------------------------------
PACKAGE = Path(__file__).resolve().parents[2] / "simulator" / "device"
#: What each module of the device may import from its own package (nothing above it).
ALLOWED = {
    "phases": set(),
    "identity_formats": set(),
    "identity": {"identity_formats"},
    "secure_enclave": set(),
    "machine": {"identity", "phases", "secure_enclave"},
    "scep_enroll": {"machine"},
    "acme_enroll": {"machine", "scep_enroll", "secure_enclave"},
    "enrollment": {"machine", "scep_enroll"},
    "setup_assistant": {"acme_enroll", "enrollment", "machine", "phases", "scep_enroll", "secure_enclave"},
    "commands": {"enrollment", "machine", "setup_assistant"},
    "push_stream": {"machine"},
    "agent": {"commands", "enrollment", "machine", "scep_enroll", "setup_assistant"},
    "drivers": {"agent", "machine", "phases", "push_stream", "setup_assistant"},
    "screens": {"machine", "phases"},
    "store": {"agent", "drivers", "identity", "machine", "secure_enclave"},
    "cli": {"agent", "drivers", "identity", "machine", "push_stream", "store"},
}


def _imports(path: Path) -> tuple[set[str], list[str]]:
    """Modules of the device package ``path`` imports, and any import made inside a function."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    nested: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 1:
                found.add(module.split(".")[0])
            elif module.startswith("simulator.device."):
                found.add(module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("simulator.device.")}
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            nested += [ast.unparse(n) for n in ast.walk(func) if isinstance(n, ast.Import | ast.ImportFrom)]
    return found, nested


def test_no_device_module_imports_upward_or_inside_a_function() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(ALLOWED)
    for name, allowed in ALLOWED.items():
        found, nested = _imports(PACKAGE / f"{name}.py")
        assert found <= allowed, f"{name} imports {sorted(found - allowed)}"
        # The one exception: Faker's names, optional at run time.
        assert nested in ([], ["from faker import Faker"]), f"{name} imports inside a function: {nested}"
    for name in ALLOWED:
        assert len((PACKAGE / f"{name}.py").read_text().splitlines()) <= 600, name
