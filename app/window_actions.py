"""Menu actions beyond the docks: swapping A and B, camera presets, keyboard shortcuts, the demo pair, help.

Shortcuts live on menu actions only (the File menu's in main_window, the rest here), so the help
dialog lists them from the menus themselves and never drifts from what the window does.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QMenu, QVBoxLayout

if TYPE_CHECKING:
    from app.main_window import MainWindow

# (direction, menu text); see renderer.camera.OrbitCamera.looking_along
CAMERA_DIRECTIONS = (("+x", "Look along +&x"), ("-x", "Look along −x"),
                     ("+y", "Look along +&y (front)"), ("-y", "Look along −y"),
                     ("-z", "Look along −&z (from above)"), ("+z", "Look along +z (from below)"))

MOUSE_HELP = (
    ("left drag", "rotate the view (all views when cameras are linked)"),
    ("Shift + left drag, middle drag", "pan"),
    ("wheel, right drag", "zoom"),
    ("R (view focused)", "reset that view's camera"),
    ("drop one file on A or B", "load it there; two files anywhere fill A and B, more become a series"),
    ("hover a slice or feature map", "the voxel's position and values of A, B and the difference"),
    ("wheel / drag on a slice image", "zoom / pan the three slice images together"),
    ("Shift + drag on a slice image", "compare only the box drawn (all planes along the slice axis)"),
    ("Ctrl+C in the distance table", "copy the selected rows in full precision"),
)


def set_cameras(window: MainWindow, camera: Any) -> None:
    """Give every existing view (A, B, difference) ``camera``, linked or not."""
    for v in (*window.slot_views.values(), window.diff_view):
        if v.view is not None:
            v.view.camera = camera


def camera_preset(window: MainWindow, direction: str | None) -> Any:
    """The camera of a preset: the default view for ``None``, else A's camera turned along ``direction``."""
    from renderer.camera import OrbitCamera

    if direction is None:
        return OrbitCamera()
    current = window.slot_views["A"].view
    base = current.camera if current is not None else OrbitCamera()
    return base.looking_along(direction)


def update_slice_planes(window: MainWindow, tab_shown: bool | None = None) -> None:
    """Outline the slice panel's plane in every view while the Slices tab is shown and the option is on.

    ``tab_shown``: the Slices dock's new visibility (its ``visibilityChanged`` argument, which
    arrives before ``isVisible`` changes); otherwise the last one reported is kept.
    """
    panel, dock = window.panels.get("slices"), window.docks.get("slices")
    if tab_shown is not None:
        window.slices_tab_shown = tab_shown
    elif not hasattr(window, "slices_tab_shown"):
        window.slices_tab_shown = dock is not None and dock.isVisible()
    plane = panel.plane if panel is not None else None
    shown = plane is not None and window.plane_action.isChecked() and window.slices_tab_shown
    for v in (*window.slot_views.values(), window.diff_view):
        if v.view is not None:
            v.view.set_slice_plane(*(plane if shown else (None,)))


def update_cuts(window: MainWindow) -> None:
    """Cut every 3D view at the Slices tab's plane on the side it keeps (or show them whole), whether
    or not that tab is shown: a cut is a choice the user made, and each view's notice says it is there."""
    panel = window.panels.get("slices")
    plane = panel.plane if panel is not None else None
    side = panel.cut_side if panel is not None else None
    for v in (*window.slot_views.values(), window.diff_view):
        if v.view is not None:
            v.view.set_cut(*((*plane, side) if plane is not None and side is not None else (None,)))
    if side is not None:
        window.last_cut_side = side
    action = getattr(window, "cut_action", None)
    if action is not None and action.isChecked() != (side is not None):
        action.blockSignals(True)
        action.setChecked(side is not None)
        action.blockSignals(False)


def toggle_cut(window: MainWindow, on: bool) -> None:
    """The menu's switch: cut at the slice keeping the side chosen last (first: the slices up to it)."""
    panel = window.panels["slices"]
    if on and panel.cut_side is None:
        panel.set_cut_side(getattr(window, "last_cut_side", "below"))
    elif not on and panel.cut_side is not None:
        panel.set_cut_side(None)


def swap_slots(window: MainWindow) -> None:
    """Exchange A and B (volumes with their transfer functions); the pair is compared again."""
    if all(window.session.item(s) is None for s in ("A", "B")):
        window.statusBar().showMessage("nothing to swap: A and B are empty", 5000)
        return
    window.session.swap()
    a, b = (window.session.item(s) for s in ("A", "B"))
    window.statusBar().showMessage(f"swapped: A is {a.name if a else '(empty)'}, B is {b.name if b else '(empty)'}",
                                   6000)


def shortcut_rows(window: MainWindow) -> list[tuple[str, str]]:
    """(keys, menu path) of every menu action that has a shortcut, in menu order."""
    rows: list[tuple[str, str]] = []

    def walk(menu: QMenu, path: str) -> None:
        for act in menu.actions():
            text = act.text().replace("&", "").rstrip("…")
            if act.menu() is not None:
                walk(act.menu(), f"{path} › {text}")
            elif not act.shortcut().isEmpty():
                keys = act.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
                rows.append((keys, f"{path} › {text}"))

    for top in window.menuBar().actions():
        if top.menu() is not None:
            walk(top.menu(), top.text().replace("&", ""))
    return rows


def controls_html(window: MainWindow) -> str:
    """The help text: mouse controls and the keyboard shortcuts of the menus, as an HTML table."""
    def table(rows: list[tuple[str, str]]) -> str:
        body = "".join(f"<tr><td style='padding-right:16px'><b>{html.escape(k)}</b></td><td>{html.escape(v)}</td></tr>"
                       for k, v in rows)
        return f"<table>{body}</table>"

    return (f"<h3>Mouse</h3>{table(list(MOUSE_HELP))}"
            f"<h3>Keyboard</h3>{table(shortcut_rows(window))}")


def show_controls(window: MainWindow) -> QDialog:
    """A non-modal dialog with the mouse controls and keyboard shortcuts."""
    dlg = getattr(window, "_controls_dialog", None)
    if dlg is None:
        dlg = QDialog(window)
        dlg.setWindowTitle("volsight — mouse and keys")
        label = QLabel()
        label.setObjectName("controls_text")
        label.setTextFormat(Qt.TextFormat.RichText)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(dlg.close)
        lay = QVBoxLayout(dlg)
        lay.addWidget(label)
        lay.addWidget(buttons)
        window._controls_dialog = dlg
    dlg.findChild(QLabel, "controls_text").setText(controls_html(window))
    dlg.show()
    dlg.raise_()
    return dlg


def about_text() -> str:
    """Version, licence and where the default learned-metric weights come from."""
    from app.cli import version

    return (f"<b>volsight {html.escape(version())}</b><br>See and measure how two volumes differ.<br><br>"
            "MIT licence. The default VolSiM weights are volsight's own, trained on its procedural "
            "simulations (<tt>volsight metric-train</tt>; card in <tt>resources/weights</tt>). The official "
            "VolSiM and LSiM checkpoints are not included: choose them under Compare › Learned-metric weights.")


def install_window_actions(window: MainWindow) -> None:
    """Swap, camera presets, demo pair and help actions; shortcuts on the common actions."""
    cm = window.compare_menu
    first = cm.actions()[0] if cm.actions() else None
    swap = QAction("&Swap A and B", window)
    swap.setShortcut(QKeySequence("Ctrl+Shift+X"))
    swap.setStatusTip("exchange the two volumes (each keeps its transfer function) and compare again")
    swap.triggered.connect(lambda _=False: swap_slots(window))
    cm.insertAction(first, swap)
    window.swap_action = swap
    window.recompute_action.setShortcut(QKeySequence("F5"))
    window.link_action.setShortcut(QKeySequence("Ctrl+L"))
    window.diff_action.setShortcut(QKeySequence("Ctrl+D"))

    window.plane_action = window._action(
        window.view_menu, "Slice &plane in the views", lambda _on: update_slice_planes(window), checkable=True,
        checked=True, tip="outline the plane of the Slices tab in the 3D views while that tab is shown")
    window.view_menu.insertAction(window.link_action, window.plane_action)
    window.cut_action = window._action(
        window.view_menu, "&Cut the views at the slice", lambda on: toggle_cut(window, on), QKeySequence("Ctrl+K"),
        checkable=True, tip="hide the part of every 3D view beyond the Slices tab's plane (which side: the "
                            "tab's 3D cut choice), so the open face shows that slice inside the volume")
    window.view_menu.insertAction(window.link_action, window.cut_action)
    window.panels["slices"].plane_changed.connect(lambda _p: update_slice_planes(window))
    window.panels["slices"].plane_changed.connect(lambda _p: update_cuts(window))
    window.panels["slices"].cut_changed.connect(lambda _side: update_cuts(window))
    window.docks["slices"].visibilityChanged.connect(lambda shown: update_slice_planes(window, shown))
    for v in (*window.slot_views.values(), window.diff_view):
        v.view_created.connect(lambda _view: update_slice_planes(window))
        v.view_created.connect(lambda _view: update_cuts(window))

    from app.field_render import field_slot, show_field_render

    window.field_render_action = window._action(
        window.view_menu, "&Ray-march the neural field…", lambda: show_field_render(window),
        QKeySequence("Ctrl+Shift+R"),
        tip="draw B's (or A's) neural field from the network itself, not its bake, at that view's camera, "
            "transfer function and method; save it as PNG")
    window.view_menu.insertAction(window.link_action, window.field_render_action)
    window.field_render_action.setEnabled(False)
    window.session.item_changed.connect(
        lambda _slot: window.field_render_action.setEnabled(field_slot(window) is not None))

    cams = QMenu("&Camera", window)
    window.view_menu.insertMenu(window.link_action, cams)
    reset = window._action(cams, "&Reset", lambda: set_cameras(window, camera_preset(window, None)),
                           QKeySequence("Ctrl+0"), tip="the default view of every volume")
    window.camera_actions = {"reset": reset}
    cams.addSeparator()
    for direction, text in CAMERA_DIRECTIONS:
        window.camera_actions[direction] = window._action(
            cams, text, lambda d=direction: set_cameras(window, camera_preset(window, d)),
            tip=f"look along the {direction} axis at the centre of the box, keeping the zoom")

    demo = QAction("Open &demo pair", window)
    demo.setStatusTip("the built-in plume and a perturbed copy, in A and B")
    demo.triggered.connect(lambda _=False: window.load_demo("plume"))
    window.file_menu.insertAction(window.recent_menu.menuAction(), demo)

    window._action(window.help_menu, "&Mouse and keys", lambda: show_controls(window),
                   QKeySequence("F1"))
    from app.region_dialog import install_region_actions

    install_region_actions(window)
