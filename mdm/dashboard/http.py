"""The dashboard blueprint: Intune's Apple Enrollment blades, rendered from the controller's Graph API.

Every action is one Graph call made with the client the composition root hands in; a Graph error is
shown next to the form that caused it, with the admin's input kept, because the API is the one place
that decides what is valid (the forms only mirror its limits in ``maxlength``/``required``), and
whether a sync may start (``syncAvailability``). Browser scripts never call the Graph API themselves:
they poll two small JSON routes of this blueprint, so the API can stay behind its bearer token while
the pages stay usable.

The Simulation pages draw a simulation's devices when the dashboard is given one (``devices_url``,
``simulation_url``): their screens live from the simulation's event stream, buttons that power them
on, erase them and move the world clock. Each button makes the very call a script would make to the
simulation (shown beside it as ``curl``), relayed by this blueprint (:mod:`.simulation`), for the
reason the Graph API is: the browser may not be allowed into ``/_sim``.

:mod:`.graph` makes the calls; :mod:`.views` computes what the pages show from the replies.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from .graph import Graph, GraphCallError
from .simulation import Simulation
from .views import (
    MAX_CERT_FILE,
    NOTICES,
    PAGE_SIZE,
    PAIRING_LABELS,
    SKIP_OPTIONS,
    format_time,
    profile_body,
    skiptoken_of,
    sync_state,
)

__all__ = ["create_blueprint", "SKIP_OPTIONS", "sync_state"]


def create_blueprint(
    api: Callable[[], httpx.Client],
    graph_base: Callable[[], str],
    devices_url: Callable[[], str],
    *,
    now: Callable[[], datetime] | None = None,
    portal_url: Callable[[], str] | None = None,
    simulation_url: Callable[[], str] | None = None,
) -> Blueprint:
    """The dashboard, for registering on the controller's app (mounted at ``/intune``).

    ``api()`` is the HTTP client to call the Graph API with, ``graph_base()`` its
    ``…/deviceManagement`` URL, ``devices_url()`` the simulation's JSON list of devices. ``now`` is
    the world's clock, so "sync again in 9 min" is counted in world time; the wall clock by default.
    ``portal_url``, when given, links the token page to Apple Business Manager's MDM servers page.
    ``simulation_url``: the simulation's control API (``…/_sim``); by default where ``devices_url`` is.
    """
    bp = Blueprint(
        "intune_dashboard",
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/dashboard-static",
    )
    clock = now or (lambda: datetime.now(UTC))
    sim_base = simulation_url or (lambda: devices_url().rstrip("/").rsplit("/devices", 1)[0])

    def simulation() -> Simulation:
        return Simulation(api(), sim_base())

    def graph() -> Graph:
        return Graph(api(), graph_base().rstrip("/"))

    def settings_path(token_id: str = "") -> str:
        return "/depOnboardingSettings" + (f"/{token_id}" if token_id else "")

    def tokens() -> list[dict[str, Any]]:
        return list(graph().get(settings_path()).get("value") or [])

    def chosen_token(all_tokens: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The ``?token=`` one, else the first with an uploaded token, else the first (Intune's picker)."""
        wanted = request.args.get("token")
        if wanted:
            for token in all_tokens:
                if token["id"] == wanted:
                    return token
            abort(404)
        return next((t for t in all_tokens if t.get("tokenType") == "dep"), all_tokens[0] if all_tokens else None)

    def page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
        context.setdefault("notice", NOTICES.get(request.args.get("notice", "")))
        return render_template(template, **context), status

    @bp.app_template_filter("when")
    def _when(text: str | None) -> str:
        return format_time(text)

    @bp.errorhandler(GraphCallError)
    def _graph_failed(error: GraphCallError) -> tuple[str, int]:
        status = error.status if 400 <= error.status < 600 else 502
        return page("dashboard_error.html", status, error=error.message, code=error.code, nav="")

    @bp.errorhandler(HTTPException)
    def _http_failed(error: HTTPException) -> tuple[str, int]:
        return page("dashboard_error.html", error.code or 400, error=error.description, code=error.name, nav="")

    # -- overview ----------------------------------------------------------------------------------
    @bp.get("/")
    def overview() -> tuple[str, int]:
        all_tokens = tokens()
        states = {t["id"]: sync_state(t, clock()) for t in all_tokens}
        return page("dashboard_overview.html", tokens=all_tokens, states=states, nav="home")

    # -- Apple MDM push certificate (a prerequisite of every enrollment profile) --------------------------
    push_path = "/applePushNotificationCertificate"

    def render_push(status: int = 200, **extra: Any) -> tuple[str, int]:
        context: dict[str, Any] = {"error": None, "form": {}}
        context.update(extra)
        return page("dashboard_push.html", status, push=graph().get(push_path), nav="push", **context)

    @bp.get("/enrollment/push-certificate")
    def push_certificate() -> tuple[str, int]:
        return render_push()

    @bp.get("/enrollment/push-certificate/IntuneCSR.csr")
    def push_csr() -> Response:
        csr = graph().get(push_path + "/downloadApplePushNotificationCertificateSigningRequest")["value"]
        response = Response(csr, mimetype="application/pkcs10")
        response.headers["Content-Disposition"] = 'attachment; filename="IntuneCSR.csr"'
        return response

    @bp.post("/enrollment/push-certificate")
    def push_upload() -> Response | tuple[str, int]:
        upload = request.files.get("certificate")
        data = upload.read(MAX_CERT_FILE) if upload is not None and upload.filename else b""
        if not data:
            return render_push(400, error="Choose the certificate (.pem) Apple issued for the CSR.", form=request.form)
        body = {
            "appleIdentifier": request.form.get("appleIdentifier", "").strip() or None,
            "certificate": data.decode("utf-8", "replace"),
        }
        try:
            graph().call("PATCH", push_path, json=body)
        except GraphCallError as exc:
            return render_push(400, error=exc.message, form=request.form)
        return redirect(url_for(".push_certificate", notice="push-uploaded"))

    # -- enrollment program tokens ---------------------------------------------------------------------
    @bp.get("/enrollment/tokens")
    def token_list() -> tuple[str, int]:
        return page("dashboard_tokens.html", tokens=tokens(), nav="tokens", error=None, form={})

    @bp.post("/enrollment/tokens")
    def token_create() -> Response | tuple[str, int]:
        name = request.form.get("tokenName", "").strip()
        try:
            created = graph().post(settings_path(), {"tokenName": name} if name else {})
        except GraphCallError as exc:
            return page(
                "dashboard_tokens.html",
                400,
                tokens=tokens(),
                nav="tokens",
                error=exc.message,
                form=request.form,
            )
        return redirect(url_for(".token_detail", token_id=created["id"], notice="token-created"))

    def render_token(token_id: str, status: int = 200, **extra: Any) -> tuple[str, int]:
        setting = graph().get(settings_path(token_id))
        context: dict[str, Any] = {
            "upload_error": None,
            "form": {},
            "key_error": None,
            "portal_url": portal_url() if portal_url is not None else None,
        }
        context.update(extra)
        return page(
            "dashboard_token.html",
            status,
            token=setting,
            state=sync_state(setting, clock()),
            nav="tokens",
            **context,
        )

    @bp.get("/enrollment/tokens/<token_id>")
    def token_detail(token_id: str) -> tuple[str, int]:
        return render_token(token_id)

    @bp.post("/enrollment/tokens/<token_id>/key")
    def token_generate_key(token_id: str) -> Response | tuple[str, int]:
        try:
            graph().post(settings_path(token_id) + "/generateEncryptionPublicKey")
        except GraphCallError as exc:
            return render_token(token_id, 400, key_error=exc.message)
        return redirect(url_for(".token_detail", token_id=token_id, notice="key-generated"))

    @bp.get("/enrollment/tokens/<token_id>/public-key.pem")
    def token_public_key(token_id: str) -> Response:
        pem = graph().get(settings_path(token_id) + "/getEncryptionPublicKey")["value"]
        response = Response(pem, mimetype="application/x-pem-file")
        response.headers["Content-Disposition"] = 'attachment; filename="MDM_public_key.pem"'
        return response

    @bp.post("/enrollment/tokens/<token_id>/upload")
    def token_upload(token_id: str) -> Response | tuple[str, int]:
        apple_id = request.form.get("appleId", "").strip()
        upload = request.files.get("depToken")
        data = upload.read(1_048_576) if upload is not None and upload.filename else b""
        if not data:
            return render_token(
                token_id,
                400,
                upload_error="Choose the token file (.p7m) you downloaded from Apple Business Manager.",
                form=request.form,
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return render_token(
                token_id,
                400,
                upload_error="That file is not a token: a .p7m token is a text (MIME) file.",
                form=request.form,
            )
        try:
            graph().post(settings_path(token_id) + "/uploadDepToken", {"appleId": apple_id or None, "depToken": text})
        except GraphCallError as exc:
            return render_token(token_id, 400, upload_error=exc.message, form=request.form)
        return redirect(url_for(".token_detail", token_id=token_id, notice="token-uploaded"))

    # -- enrollment profiles -------------------------------------------------------------------------------
    @bp.get("/enrollment/profiles")
    def profile_list() -> tuple[str, int]:
        all_tokens = tokens()
        token = chosen_token(all_tokens)
        profiles = graph().get(settings_path(token["id"]) + "/enrollmentProfiles")["value"] if token else []
        return page("dashboard_profiles.html", tokens=all_tokens, token=token, profiles=profiles, nav="profiles")

    def render_profile_form(status: int, token: dict[str, Any], all_tokens: list, **extra: Any) -> tuple[str, int]:
        context: dict[str, Any] = {"form": {}, "error": None, "cert_text": ""}
        context.update(extra)
        return page(
            "dashboard_profile_form.html",
            status,
            token=token,
            tokens=all_tokens,
            skip_options=SKIP_OPTIONS,
            pairing_labels=PAIRING_LABELS,
            nav="profiles",
            **context,
        )

    @bp.get("/enrollment/profiles/new")
    def profile_new() -> Response | tuple[str, int]:
        all_tokens = tokens()
        token = chosen_token(all_tokens)
        if token is None:
            return redirect(url_for(".token_list"))
        return render_profile_form(200, token, all_tokens)

    @bp.post("/enrollment/profiles/new")
    def profile_create() -> Response | tuple[str, int]:
        all_tokens = tokens()
        token = chosen_token(all_tokens)
        if token is None:
            return redirect(url_for(".token_list"))
        body, cert_text = profile_body(request.form, request.files.getlist("certificateFile"))
        try:
            graph().post(settings_path(token["id"]) + "/enrollmentProfiles", body)
        except GraphCallError as exc:
            return render_profile_form(400, token, all_tokens, form=request.form, error=exc.message, cert_text=cert_text)
        return redirect(url_for(".profile_list", token=token["id"], notice="profile-created"))

    @bp.get("/enrollment/profiles/<profile_id>")
    def profile_detail(profile_id: str) -> tuple[str, int]:
        all_tokens = tokens()
        token = chosen_token(all_tokens)
        if token is None:
            abort(404)
        profile = graph().get(settings_path(token["id"]) + f"/enrollmentProfiles/{profile_id}")
        return page(
            "dashboard_profile.html",
            tokens=all_tokens,
            token=token,
            profile=profile,
            skip_options=SKIP_OPTIONS,
            pairing_labels=PAIRING_LABELS,
            nav="profiles",
        )

    # -- serial numbers (imported Apple device identities) -----------------------------------------------
    def render_serials(status: int = 200, **extra: Any) -> tuple[str, int]:
        all_tokens = tokens()
        token = chosen_token(all_tokens)
        context: dict[str, Any] = {"error": None, "results": None, "selected": set(), "profile_choice": ""}
        context.update(extra)
        if token is None:
            return page("dashboard_serials.html", status, tokens=[], token=None, nav="serials", **context)
        path = settings_path(token["id"])
        profiles = graph().get(path + "/enrollmentProfiles")["value"]
        params = {"$top": str(PAGE_SIZE)}
        skip = request.args.get("skiptoken")
        if skip:
            params["$skiptoken"] = skip
        listing = graph().get(path + "/importedAppleDeviceIdentities", **params)
        return page(
            "dashboard_serials.html",
            status,
            tokens=all_tokens,
            token=token,
            profiles=profiles,
            names={p["id"]: p.get("displayName") for p in profiles},
            devices=listing.get("value") or [],
            next_skiptoken=skiptoken_of(listing.get("@odata.nextLink")),
            state=sync_state(token, clock()),
            nav="serials",
            sim=simulation().page_context(),
            **context,
        )

    @bp.get("/enrollment/serials")
    def serials() -> tuple[str, int]:
        return render_serials()

    @bp.post("/enrollment/serials/assign")
    def serials_assign() -> tuple[str, int]:
        all_tokens = tokens()
        token = chosen_token(all_tokens)
        if token is None:
            abort(404)
        chosen = [s for s in request.form.getlist("serial") if s]
        profile_id = request.form.get("profile", "")
        if not chosen:
            return render_serials(400, error="Select at least one serial number to assign.", profile_choice=profile_id)
        if not profile_id:
            return render_serials(400, error="Choose the profile to assign.", selected=set(chosen))
        path = settings_path(token["id"]) + f"/enrollmentProfiles/{profile_id}/updateDeviceProfileAssignment"
        try:
            reply = graph().post(path, {"deviceIds": chosen})
        except GraphCallError as exc:
            return render_serials(400, error=exc.message, selected=set(chosen), profile_choice=profile_id)
        results = (reply or {}).get("value") or [{"serialNumber": s, "status": "SUCCESS"} for s in chosen]
        return render_serials(200, results=results, profile_choice=profile_id)

    @bp.post("/enrollment/serials/sync")
    def serials_sync() -> Response | tuple[str, int]:
        all_tokens = tokens()
        token = chosen_token(all_tokens)
        if token is None:
            abort(404)
        try:
            graph().post(settings_path(token["id"]) + "/syncWithAppleDeviceEnrollmentProgram")
        except GraphCallError as exc:
            return render_serials(exc.status if exc.status in (400, 409, 429) else 502, error=exc.message)
        return redirect(url_for(".serials", token=token["id"], notice="sync-requested"))

    # -- simulated devices ------------------------------------------------------------------------------
    @bp.get("/devices")
    def simulated_devices() -> tuple[str, int]:
        return page("dashboard_devices.html", nav="devices", sim=simulation().page_context(screens=True))

    # The simulation's own calls, relayed as they are (see .simulation): what the buttons do.
    def relay(method: str, path: str, *, long: bool = False) -> Response:
        if method == "POST" and not request.is_json:
            # Only application/json: a form on another site cannot send it without the browser asking
            # first (CORS), so no other page can press these buttons for the admin.
            return _json({"error": "send the body as application/json"}, 415)
        body = request.get_json(silent=True) if method == "POST" else None
        if method == "POST" and body is None and request.get_data(cache=True).strip():
            return _json({"error": "the body is not JSON"}, 400)
        return simulation().relay(method, path, body, long=long)

    @bp.post("/api/simulation/devices/power-on")
    def sim_power_on_many() -> Response:
        return relay("POST", "/devices/power-on", long=True)

    @bp.post("/api/simulation/devices/<serial>/power-on")
    def sim_power_on(serial: str) -> Response:
        return relay("POST", f"/devices/{quote(serial, safe='')}/power-on", long=True)

    @bp.post("/api/simulation/devices/<serial>/erase")
    def sim_erase(serial: str) -> Response:
        return relay("POST", f"/devices/{quote(serial, safe='')}/erase")

    @bp.post("/api/simulation/clock")
    def sim_clock() -> Response:
        return relay("POST", "/clock")

    @bp.get("/api/simulation/devices/<serial>/exchanges")
    def sim_exchanges(serial: str) -> Response:
        return relay("GET", f"/devices/{quote(serial, safe='')}/exchanges")

    @bp.get("/api/simulation/devices/<serial>/exchanges/<int:exchange_id>")
    def sim_exchange(serial: str, exchange_id: int) -> Response:
        return relay("GET", f"/devices/{quote(serial, safe='')}/exchanges/{exchange_id}")

    # -- JSON for the page scripts -------------------------------------------------------------------
    @bp.get("/api/tokens/<token_id>/sync-status")
    def sync_status(token_id: str) -> Response:
        try:
            setting = graph().get(settings_path(token_id))
        except GraphCallError as exc:
            return _json({"error": exc.message}, exc.status if 400 <= exc.status < 600 else 502)
        return _json(sync_state(setting, clock()))

    @bp.get("/api/simulated-devices")
    def simulated_devices_json() -> Response:
        """The simulation's device list, fetched server-side: the browser may not reach (or be allowed
        into) ``/_sim``, and an in-process world has no address a browser could use at all."""
        try:
            reply = api().get(devices_url())
        except httpx.HTTPError as exc:
            return _json({"available": False, "reason": f"the simulation could not be reached ({type(exc).__name__})"})
        if reply.status_code != 200:
            return _json({"available": False, "reason": f"the simulation's device list answered {reply.status_code}"})
        try:
            devices = reply.json()
        except ValueError:
            return _json({"available": False, "reason": "the simulation's device list is not JSON"})
        if isinstance(devices, dict):
            devices = devices.get("devices") or devices.get("value") or []
        if not isinstance(devices, list):
            return _json({"available": False, "reason": "the simulation's device list is not a list"})
        return _json({"available": True, "devices": devices[:2000]})

    return bp


def _json(value: Any, status: int = 200) -> Response:
    from flask import json

    response = Response(json.dumps(value), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response
