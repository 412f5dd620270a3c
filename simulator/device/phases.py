"""Where a device is in Setup Assistant, and the one table of moves between those places.

A device's position is two strings of its :class:`~simulator.device.machine.DeviceState`: ``phase``
(``setup``, ``awaiting_configuration``, ``home``: what an MDM server and ``mdmsim device list`` see)
and ``pane`` (the screen it is on, named by Apple's skip key where one exists). Both are assigned here
and nowhere else, by :func:`move`, which checks the move against :data:`TRANSITIONS` in the h11 style:
``(step, event) -> next step``. A move the table does not list is a bug in the device, and raises
:class:`SetupAssistantError` naming the step, the event and the pane, instead of leaving a device in
a place no real iPhone can be (enrolled but on Hello, home but awaiting configuration).

A *step* groups panes that behave alike: the seven pre-activation panes are one step (they are walked
in a row before the cloud configuration is known), and so are the local panes after enrollment (which
of them a device shows depends on its hardware, OS and ``SkipSetup``, decided in
:mod:`simulator.device.setup_assistant`). The step is not stored: it follows from the phase and pane.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Protocol

__all__ = [
    "Event",
    "Pane",
    "Phase",
    "POST_ENROLLMENT_ORDER",
    "PRE_ACTIVATION_PANES",
    "SetupAssistantError",
    "Step",
    "TRANSITIONS",
    "move",
    "step_of",
]


class Phase(StrEnum):
    """``DeviceState.phase``: what the device is doing as a whole."""

    SETUP = "setup"  # walking Setup Assistant (or stopped on a pane with an error)
    AWAITING_CONFIGURATION = "awaiting_configuration"  # enrolled, held until the MDM sends DeviceConfigured
    HOME = "home"  # Setup Assistant finished


class Pane(StrEnum):
    """The panes every device passes whatever its model and profile (the others are skip keys)."""

    HELLO = "Hello"
    ACTIVATION = "Activation"
    REMOTE_MANAGEMENT = "RemoteManagement"
    AUTHENTICATION = "Authentication"
    ENROLLMENT = "Enrollment"
    AWAITING_CONFIGURATION = "AwaitingConfiguration"
    HOME_SCREEN = "HomeScreen"


#: Panes before the cloud configuration is known. Keyboard, SpokenLanguage and TermsOfAddress are
#: the skip keys Apple marks "not always skippable" for this reason.
PRE_ACTIVATION_PANES: Final = (
    "Hello", "Language", "Region", "Keyboard", "SpokenLanguage", "TermsOfAddress", "WiFi",
)  # fmt: skip

#: After enrollment, in the order iOS 17/18 shows them. Every name is an Apple skip key.
POST_ENROLLMENT_ORDER: Final = (
    "Privacy", "DeviceToDeviceMigration", "Biometric", "Passcode", "Restore", "Android", "AppleID",
    "EnableLockdownMode", "TOS", "SoftwareUpdate", "Location", "Siri", "ScreenTime", "Payment",
    "iMessageAndFaceTime", "MessagingActivationUsingPhoneNumber", "SIMSetup", "Diagnostics", "Safety",
    "Intelligence", "ActionButton", "CameraButton", "HomeButtonSensitivity", "DisplayTone", "Zoom",
    "Appearance", "AppStore", "OnBoarding", "Welcome",
)  # fmt: skip


class Step(StrEnum):
    """A group of panes that behave alike; the states of :data:`TRANSITIONS`."""

    PRE_ACTIVATION = "pre-activation"  # Hello … Wi-Fi
    ACTIVATION = "activation"
    REMOTE_MANAGEMENT = "remote-management"
    AUTHENTICATION = "authentication"
    ENROLLMENT = "enrollment"
    AWAITING_CONFIGURATION = "awaiting-configuration"
    LOCAL_PANES = "local-panes"  # Privacy … Welcome, then the Home Screen about to appear
    HOME = "home"


class Event(StrEnum):
    """What happened on the device that moves it on."""

    SHOW_PANE = "show a pane"  # the next pane of the same step
    CONNECTED = "connect to a network"  # the pre-activation panes are done: activate
    ACTIVATED_MANAGED = "activate with Remote Management"
    ACTIVATED_UNMANAGED = "activate without Remote Management"
    MANAGEMENT_ACCEPTED = "accept Remote Management"
    CREDENTIALS_REQUIRED = "be asked for a user name and password"
    AUTHENTICATED = "sign in"
    ENROLLMENT_FAILED = "fail to get the enrollment profile"
    IDENTITY_NOT_ISSUED = "get no identity from the SCEP server"  # refused, or still pending
    ENROLLED = "enroll"
    ENROLLED_AWAITING = "enroll and await configuration"
    DEVICE_CONFIGURED = "receive DeviceConfigured"
    SETUP_COMPLETE = "finish Setup Assistant"
    ERASE = "erase"


#: Every move a device can make, and nothing else. The enrollment events leave from Authentication
#: too: a device stopped there retries the whole exchange, and the server may not ask again.
TRANSITIONS: Final[dict[tuple[Step, Event], Step]] = {
    (Step.PRE_ACTIVATION, Event.SHOW_PANE): Step.PRE_ACTIVATION,
    (Step.PRE_ACTIVATION, Event.CONNECTED): Step.ACTIVATION,
    (Step.ACTIVATION, Event.ACTIVATED_MANAGED): Step.REMOTE_MANAGEMENT,
    (Step.ACTIVATION, Event.ACTIVATED_UNMANAGED): Step.LOCAL_PANES,
    (Step.REMOTE_MANAGEMENT, Event.MANAGEMENT_ACCEPTED): Step.ENROLLMENT,
    (Step.ENROLLMENT, Event.CREDENTIALS_REQUIRED): Step.AUTHENTICATION,
    (Step.AUTHENTICATION, Event.CREDENTIALS_REQUIRED): Step.AUTHENTICATION,
    (Step.AUTHENTICATION, Event.AUTHENTICATED): Step.ENROLLMENT,
    (Step.ENROLLMENT, Event.ENROLLMENT_FAILED): Step.ENROLLMENT,
    (Step.AUTHENTICATION, Event.ENROLLMENT_FAILED): Step.ENROLLMENT,
    # iOS shows the Remote Management pane again when the identity payload fails: enrollment did not happen
    (Step.ENROLLMENT, Event.IDENTITY_NOT_ISSUED): Step.REMOTE_MANAGEMENT,
    (Step.AUTHENTICATION, Event.IDENTITY_NOT_ISSUED): Step.REMOTE_MANAGEMENT,
    (Step.ENROLLMENT, Event.ENROLLED): Step.LOCAL_PANES,
    (Step.AUTHENTICATION, Event.ENROLLED): Step.LOCAL_PANES,
    (Step.ENROLLMENT, Event.ENROLLED_AWAITING): Step.AWAITING_CONFIGURATION,
    (Step.AUTHENTICATION, Event.ENROLLED_AWAITING): Step.AWAITING_CONFIGURATION,
    (Step.AWAITING_CONFIGURATION, Event.DEVICE_CONFIGURED): Step.LOCAL_PANES,
    (Step.LOCAL_PANES, Event.SHOW_PANE): Step.LOCAL_PANES,
    (Step.LOCAL_PANES, Event.SETUP_COMPLETE): Step.HOME,
    # Erase All Content and Settings works from anywhere and starts over at Hello.
    **{(step, Event.ERASE): Step.PRE_ACTIVATION for step in Step},
}

#: The phase a device is in while on a step.
_PHASE: Final[dict[Step, Phase]] = {
    **{step: Phase.SETUP for step in Step},
    Step.AWAITING_CONFIGURATION: Phase.AWAITING_CONFIGURATION,
    Step.HOME: Phase.HOME,
}
#: The panes of each step.
_PANES: Final[dict[Step, tuple[str, ...]]] = {
    Step.PRE_ACTIVATION: PRE_ACTIVATION_PANES,
    Step.ACTIVATION: (Pane.ACTIVATION,),
    Step.REMOTE_MANAGEMENT: (Pane.REMOTE_MANAGEMENT,),
    Step.AUTHENTICATION: (Pane.AUTHENTICATION,),
    Step.ENROLLMENT: (Pane.ENROLLMENT,),
    Step.AWAITING_CONFIGURATION: (Pane.AWAITING_CONFIGURATION,),
    # A device with no local pane to show goes straight to the Home Screen, still in phase setup.
    Step.LOCAL_PANES: (*POST_ENROLLMENT_ORDER, Pane.HOME_SCREEN),
    Step.HOME: (Pane.HOME_SCREEN,),
}
_PANE_SETS: Final = {step: frozenset(panes) for step, panes in _PANES.items()}
#: Where a step starts when a move names no pane; the local panes have no fixed start (they depend on
#: the device), so a move there must name its pane.
_START: Final[dict[Step, str | None]] = {step: panes[0] for step, panes in _PANES.items()} | {Step.LOCAL_PANES: None}
_STEP_OF_PANE: Final[dict[str, Step]] = {
    pane: step for step in (Step.PRE_ACTIVATION, Step.ACTIVATION, Step.REMOTE_MANAGEMENT, Step.AUTHENTICATION,
                            Step.ENROLLMENT, Step.AWAITING_CONFIGURATION) for pane in _PANES[step]
}  # fmt: skip


class SetupAssistantError(RuntimeError):
    """A move the transition table does not allow: a bug in the device, never a server's fault."""


class Position(Protocol):
    """What :func:`move` needs of a device's state (``DeviceState`` has both)."""

    phase: str
    pane: str


def step_of(phase: str, pane: str) -> Step:
    """The step a device is on. Local panes and the Home Screen are told apart by the phase."""
    if phase == Phase.HOME:
        return Step.HOME
    return _STEP_OF_PANE.get(pane, Step.LOCAL_PANES)


def move(state: Position, event: Event, pane: str | None = None) -> None:
    """Move ``state`` on ``event`` to ``pane`` (default: where the next step starts).

    Raises :class:`SetupAssistantError` when the table has no such move from where the device is, or
    when ``pane`` is not a pane of the step the move leads to.
    """
    here = step_of(state.phase, state.pane)
    there = TRANSITIONS.get((here, event))
    if there is None:
        raise SetupAssistantError(f"a device on {state.pane} ({here}) cannot {event}")
    if pane is None:
        pane = _START[there]
        if pane is None:
            raise SetupAssistantError(f"moving from {state.pane} to {there} must name the pane")
    elif pane not in _PANE_SETS[there]:
        raise SetupAssistantError(f"{pane} is not a pane of {there} (moving from {state.pane} to {event})")
    # Plain shared strings, not enum members: the state goes to JSON and SQLite, and ten thousand
    # idle devices should not each hold a copy of "HomeScreen".
    state.pane = pane.value if isinstance(pane, Pane) else pane
    state.phase = _PHASE[there].value
