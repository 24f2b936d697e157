"""In-Slicer tests of the CUTSSegmentation panel: background job, slider, persistent map, cancel.

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
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest


class CUTSSegmentationModuleTest(ScriptedLoadableModuleTest):
    """Drive the module widget the way a user does, with a small synthetic image."""

    def setUp(self):
        slicer.mrmlScene.Clear()
        slicer.util.selectModule("CUTSSegmentation")
        self.widget = slicer.util.getModuleWidget("CUTSSegmentation")
        missing = self.widget.logic.missingDependencies()
        if missing:
            self.skipTest(
                "CUTS engine dependencies are not installed: " + ", ".join(missing)
            )
        from CUTSSegmentationJobs.engine import synthetic_image_2d
        from CUTSSegmentationMRML import image_to_volume_node

        image, self.truth = synthetic_image_2d(size=64, seed=0)
        self.volumeNode = image_to_volume_node(
            slicer.mrmlScene, image, name="CUTS phantom"
        )
        parameters = self.widget.panel.parameterNode
        parameters.inputVolume = self.volumeNode
        parameters.epochs = 2
        parameters.device = "cpu"

    def runTest(self):
        self.setUp()
        self.test_SegmentSliderPersistent()
        self.setUp()
        self.test_CancelLeavesSceneUnchanged()

    def _waitForJob(self, timeout=600.0):
        deadline = time.monotonic() + timeout
        while self.widget.panel.controller.job is not None:
            slicer.app.processEvents()
            time.sleep(0.05)
            self.assertLess(
                time.monotonic(), deadline, "the background job did not finish in time"
            )

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
        segmentationNode = parameters.outputSegmentation
        self.assertIsNotNone(segmentationNode)
        hierarchy = self.widget.logic.hierarchyForNode(parameters.hierarchyNode)
        for level in range(hierarchy.n_levels):
            ui.levelSliderWidget.value = level
            slicer.app.processEvents()
            shown = segmentationNode.GetSegmentation().GetNumberOfSegments()
            self.assertEqual(
                shown, len(np.unique(hierarchy.level(level))), f"level {level}"
            )
        if hierarchy.persistent is not None:
            ui.persistentButton.checked = True
            slicer.app.processEvents()
            expected = len(np.unique(hierarchy.persistent[hierarchy.persistent > 0]))
            self.assertEqual(
                segmentationNode.GetSegmentation().GetNumberOfSegments(), expected
            )

    def test_CancelLeavesSceneUnchanged(self):
        """Cancel kills the process tree and imports nothing."""
        ui = self.widget.panel.ui
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        self.widget.panel.parameterNode.epochs = (
            1000  # long enough to be cancelled while it runs
        )
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


if __name__ == "__main__":
    unittest.main()
