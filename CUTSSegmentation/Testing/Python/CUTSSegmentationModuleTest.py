"""In-Slicer tests of the CUTSSegmentation panel: background job, slider, persistent map, add and undo, cancel,
sample data.

Registered with slicer_add_python_unittest (Testing/Python/CMakeLists.txt); run with
`ctest -R py_CUTSSegmentationModuleTest` in the extension's build tree, or from Slicer's Python console:
`import CUTSSegmentationModuleTest, unittest; unittest.main(CUTSSegmentationModuleTest, exit=False)`.
They need the Slicer application (Qt event loop, PythonSlicer); the Qt-free parts are tested by pytest in
the repository's tests/ folder.
"""

import os
import time
import unittest

import numpy as np
import slicer
import vtk
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest


class CUTSSegmentationModuleTest(ScriptedLoadableModuleTest):
    """Drive the module widget the way a user does, with a small synthetic image."""

    def setUp(self):
        slicer.mrmlScene.Clear()
        slicer.util.selectModule("CUTSSegmentation")
        self.widget = slicer.util.getModuleWidget("CUTSSegmentation")
        missing = self.widget.logic.missingDependencies()
        if missing:
            self.skipTest("CUTS engine dependencies are not installed: " + ", ".join(missing))
        from CUTSSegmentationJobs.engine import synthetic_image_2d
        from CUTSSegmentationMRML import image_to_volume_node

        image, self.truth = synthetic_image_2d(size=64, seed=0)
        self.volumeNode = image_to_volume_node(slicer.mrmlScene, image, name="CUTS phantom")
        parameters = self.widget.panel.parameterNode
        parameters.inputVolume = self.volumeNode
        parameters.epochs = 2
        parameters.device = "cpu"

    def runTest(self):
        self.setUp()
        self.test_SegmentSliderPersistent()
        self.setUp()
        self.test_CancelLeavesSceneUnchanged()
        self.test_SampleDataLoads()

    def _waitForJob(self, timeout=600.0):
        deadline = time.monotonic() + timeout
        while self.widget.panel.controller.job is not None:
            slicer.app.processEvents()
            time.sleep(0.05)
            self.assertLess(time.monotonic(), deadline, "the background job did not finish in time")

    def test_SegmentSliderPersistent(self):
        """Run condensation in the background, then every slider position shows that level's clusters."""
        ui, parameters = self.widget.panel.ui, self.widget.panel.parameterNode
        ui.segmentButton.click()
        job = self.widget.panel.controller.job
        self.assertIsNotNone(job, "Run condensation did not start a background job")
        workDir = job.work_dir
        self._waitForJob()
        self.assertFalse(os.path.exists(workDir), "the job folder was not removed")
        self.assertIsNotNone(parameters.hierarchyNode)
        segmentationNode = parameters.previewSegmentation
        self.assertIsNotNone(segmentationNode)
        self.assertIsNone(
            parameters.outputSegmentation,
            "levels are previewed, not written to an output",
        )
        hierarchy = self.widget.logic.hierarchyForNode(parameters.hierarchyNode)
        for level in range(hierarchy.n_levels):
            ui.levelSliderWidget.value = level
            slicer.app.processEvents()
            shown = segmentationNode.GetSegmentation().GetNumberOfSegments()
            self.assertEqual(shown, len(np.unique(hierarchy.level(level))), f"level {level}")
        if hierarchy.persistent is not None:
            ui.persistentButton.checked = True
            slicer.app.processEvents()
            expected = len(np.unique(hierarchy.persistent[hierarchy.persistent > 0]))
            self.assertEqual(segmentationNode.GetSegmentation().GetNumberOfSegments(), expected)
            ui.persistentButton.checked = False

        # Add the structure under a seed at two levels; Undo takes the second one back.
        seedNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
        parameters.seedPoints = seedNode
        ijkToRas = vtk.vtkMatrix4x4()
        self.volumeNode.GetIJKToRASMatrix(ijkToRas)
        seedNode.AddControlPoint(ijkToRas.MultiplyPoint([32.0, 32.0, 0.0, 1.0])[:3])
        ui.automaticLevelCheckBox.checked = False  # the level shown, at once
        slicer.app.processEvents()
        self.assertFalse(parameters.automaticLevel)
        for level in (0, hierarchy.n_levels - 1):
            ui.levelSliderWidget.value = level
            slicer.app.processEvents()
            ui.addStructureButton.click()
        output = parameters.outputSegmentation
        self.assertEqual(output.GetSegmentation().GetNumberOfSegments(), 2)
        self.assertTrue(ui.undoButton.enabled)
        ui.undoButton.click()
        self.assertEqual(output.GetSegmentation().GetNumberOfSegments(), 1)
        # The structure at its own level: the engine's click, in the background.
        ui.automaticLevelCheckBox.checked = True
        slicer.app.processEvents()
        ui.addStructureButton.click()
        self.assertIsNotNone(self.widget.panel.controller.job, "the automatic level did not start a job")
        self._waitForJob()
        self.assertEqual(output.GetSegmentation().GetNumberOfSegments(), 2)
        self.assertEqual(output.GetSegmentation().GetNthSegment(1).GetName(), "Structure (automatic level)")
        ui.show3DButton.checked = True
        self.assertTrue(output.GetSegmentation().ContainsRepresentation("Closed surface"))

    def test_CancelLeavesSceneUnchanged(self):
        """Cancel kills the process tree and imports nothing."""
        ui = self.widget.panel.ui
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        self.widget.panel.parameterNode.epochs = 1000  # long enough to be cancelled while it runs
        ui.segmentButton.click()
        job = self.widget.panel.controller.job
        self.assertIsNotNone(job)
        deadline = time.monotonic() + 120
        while job.last_progress is None and time.monotonic() < deadline:
            slicer.app.processEvents()
            time.sleep(0.05)
        ui.cancelButton.click()
        self.assertIsNone(self.widget.panel.controller.job)
        self.assertTrue(job.result.cancelled)
        self.assertFalse(os.path.exists(job.work_dir))
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)
        self.assertIsNone(self.widget.panel.parameterNode.hierarchyNode)

    def test_SampleDataLoads(self):
        """The module's sample volume is in the Sample Data module and loads without a network."""
        import SampleData

        volumeNode = SampleData.SampleDataLogic().downloadSample("CUTSSpineT2")
        self.assertIsNotNone(volumeNode)
        self.assertEqual(volumeNode.GetImageData().GetDimensions(), (60, 55, 52))


if __name__ == "__main__":
    unittest.main()
