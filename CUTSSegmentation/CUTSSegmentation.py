import os

import slicer
from CUTSSegmentationModuleLib import (
    DependencyInstaller,
    SegmentationLogic,
    forget_packages,
    register_sample_data,
    selftest,
)
from CUTSSegmentationModuleLib.dependencies import (
    pytorch_extension_logic,
    slicer_confirm,
    slicer_package_installer,
)
from CUTSSegmentationModuleLib.panel import Panel
from CUTSSegmentationModuleLib.parameters import CUTSSegmentationParameterNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)


class CUTSSegmentation(ScriptedLoadableModule):
    """Module description; the panel, logic and engine live in CUTSSegmentationModuleLib and its siblings."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("CUTS Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["CUTSSegmentation developers (CUTSSegmentation project)"]
        self.parent.helpText = _("""
Unsupervised, multigranular segmentation after the CUTS paper (Liu, Amodio et al.): no labels needed.
<ol>
<li>Select an <b>input volume</b> (scalar, or an RGB colour image; try the sample data <i>CUTSSpineT2</i>).</li>
<li>Optionally <b>Train encoder</b> on it (or <b>Load encoder...</b>); without an encoder,
<b>Run condensation</b> trains one on the input first.</li>
<li><b>Run condensation</b> computes a coarse-to-fine hierarchy of segmentations. Move the <b>Granularity</b>
slider to show another level, or press <b>Persistent structures</b>.</li>
<li>Levels show in a preview: place a seed; <b>Add to segmentation</b> adds the structure under it as a new
named segment (yours never change; <b>Undo</b>): at its own level, grown to the image's edge (the default), or
at the level shown. <b>Show 3D</b>, <b>Export hierarchy</b>, <b>Show in Segment Editor</b>.</li>
</ol>
Jobs run in a background process: <b>Cancel</b> stops them and leaves the scene as it was. PyTorch comes from
the PyTorch extension. Python console and batch use: see the module's documentation (docs/slicer-module.md).
""")
        self.parent.acknowledgementText = _("""
Implements the method of "CUTS: A Framework for Multigranular Unsupervised Medical Image Segmentation"
(Chen Liu, Matthew Amodio et al.). Extension layout follows the 3D Slicer extension templates.
Sample data CUTSSpineT2: cervical spine T2 MRI from the Spinal Cord Toolbox test data (NeuroPoly,
Polytechnique Montreal), MIT licence.
""")
        here = os.path.dirname(__file__)
        slicer.app.connect("startupCompleted()", lambda: register_sample_data(here))


class CUTSSegmentationWidget(ScriptedLoadableModuleWidget):
    """The module panel: built by CUTSSegmentationModuleLib.panel, decided by its controller."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.logic = None
        self.panel = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self.logic = CUTSSegmentationLogic()
        self.panel = Panel(
            self.resourcePath("UI/CUTSSegmentation.ui"),
            self.logic,
            self.logic.getParameterNode,
            lambda: self.parent.isEntered,
        )
        self.layout.addWidget(self.panel.uiWidget)
        self.panel.enter()  # the parameter node exists and is observed (also after a Reload)

    def cleanup(self) -> None:
        self.panel.cleanup()

    def enter(self) -> None:
        self.panel.enter()

    def exit(self) -> None:
        self.panel.exit()

    def onReload(self) -> None:
        """Reload re-reads the module's packages too, not only this file."""
        forget_packages()
        ScriptedLoadableModuleWidget.onReload(self)


class CUTSSegmentationLogic(ScriptedLoadableModuleLogic, SegmentationLogic):
    """The module logic (see CUTSSegmentationModuleLib.logic); usable without the GUI, e.g.

    logic = slicer.util.getModuleLogic("CUTSSegmentation")
    hierarchy = logic.segment(volumeNode, epochs=50)
    segmentationNode = logic.pushLevel(hierarchy, 2)  # or "persistent"
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        requirements = os.path.join(os.path.dirname(__file__), "Resources", "requirements.txt")
        dependencies = DependencyInstaller(
            requirements,
            pytorch_extension_logic,
            slicer_package_installer(self.moduleName),
            slicer_confirm,
        )
        SegmentationLogic.__init__(self, dependencies)

    def getParameterNode(self) -> CUTSSegmentationParameterNode:
        return CUTSSegmentationParameterNode(super().getParameterNode())


class CUTSSegmentationTest(ScriptedLoadableModuleTest):
    """Self-test ("Reload and Test"); the same checks run under pytest on slicer-core."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_CUTSSegmentationPushLevel()
        self.setUp()
        self.test_CUTSSegmentationEndToEnd()

    def test_CUTSSegmentationPushLevel(self):
        selftest.check_push_level(CUTSSegmentationLogic(), slicer.mrmlScene)
        self.delayDisplay("Level push test passed")

    def test_CUTSSegmentationEndToEnd(self):
        logic = CUTSSegmentationLogic()
        missing = logic.missingDependencies()
        if missing:  # not skipTest: "Reload and Test" calls runTest outside a unittest runner
            self.delayDisplay("End-to-end test not run, missing: " + ", ".join(missing))
            return
        selftest.check_end_to_end(logic, slicer.mrmlScene)
        self.delayDisplay("End-to-end test passed")
