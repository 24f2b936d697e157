"""The extension's build and catalog files: CMakeLists (top and module), .s4ext, the catalog JSON, the icon."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
from slicer_testdata import MODULE_DIR, MODULE_NAME, REPO

MODULE_FILE = MODULE_DIR / f"{MODULE_NAME}.py"


def cmake_text(path: Path) -> str:
    return "\n".join(line.split("#", 1)[0] for line in path.read_text(encoding="utf-8").splitlines())


def cmake_sets(path: Path) -> dict[str, list[str]]:
    """set(NAME v1 v2 ...) blocks of a CMakeLists (comments stripped; ${MODULE_NAME} etc. substituted)."""
    sets: dict[str, list[str]] = {}
    for name, body in re.findall(r"\bset\(\s*(\w+)\s+(.*?)\)", cmake_text(path), re.DOTALL):
        sets[name] = body.split()

    def expand(value: str) -> str:
        return re.sub(
            r"\$\{(\w+)\}",
            lambda m: " ".join(sets.get(m.group(1), [m.group(0)])),
            value,
        )

    return {name: [expand(v) for v in values] for name, values in sets.items()}


def cmake_calls(path: Path, command: str) -> list[list[str]]:
    return [body.split() for body in re.findall(rf"\b{command}\(\s*(.*?)\)", cmake_text(path), re.DOTALL)]


def relative_files(folder: Path, pattern: str) -> set[str]:
    return {
        p.relative_to(folder).as_posix() for p in folder.rglob(pattern) if p.is_file() and "__pycache__" not in p.parts
    }


def test_module_cmakelists_lists_every_python_file_and_resource():
    sets = cmake_sets(MODULE_DIR / "CMakeLists.txt")
    scripts = set(sets["MODULE_PYTHON_SCRIPTS"])
    expected = {p for p in relative_files(MODULE_DIR, "*.py") if not p.startswith(("Testing/", "Resources/"))}
    assert scripts == expected, f"missing {sorted(expected - scripts)}, stale {sorted(scripts - expected)}"
    resources = set(sets["MODULE_PYTHON_RESOURCES"])
    expected_resources = {f"Resources/{p}" for p in relative_files(MODULE_DIR / "Resources", "*")}
    assert resources == expected_resources, (
        f"missing {sorted(expected_resources - resources)}, stale {sorted(resources - expected_resources)}"
    )
    (call,) = cmake_calls(MODULE_DIR / "CMakeLists.txt", "slicerMacroBuildScriptedModule")
    assert call[:2] == ["NAME", "${MODULE_NAME}"] and {
        "SCRIPTS",
        "RESOURCES",
        "WITH_GENERIC_TESTS",
    } <= set(call)
    assert sets["MODULE_NAME"] == [MODULE_NAME]


def test_engine_package_is_shipped_next_to_the_module():
    text = cmake_text(MODULE_DIR / "CMakeLists.txt")
    sets = cmake_sets(MODULE_DIR / "CMakeLists.txt")
    (glob,) = cmake_calls(MODULE_DIR / "CMakeLists.txt", "file")
    assert glob == [
        "GLOB_RECURSE",
        "CUTS_ENGINE_PYTHON_SCRIPTS",
        "RELATIVE",
        "${CUTS_ENGINE_SOURCE_DIR}",
        "CONFIGURE_DEPENDS",
        "${CUTS_ENGINE_SOURCE_DIR}/*.py",
    ]
    engine_dir = (MODULE_DIR / sets["CUTS_ENGINE_SOURCE_DIR"][0].replace("${CMAKE_CURRENT_SOURCE_DIR}/", "")).resolve()
    assert engine_dir == REPO / "CUTSSegmentationLib" and (engine_dir / "__init__.py").is_file()
    resources = set(sets["CUTS_ENGINE_PYTHON_RESOURCES"])
    assert resources == {p for p in relative_files(engine_dir, "*") if not p.endswith((".py", ".pyc"))}
    (call,) = cmake_calls(MODULE_DIR / "CMakeLists.txt", "ctkMacroCompilePythonScript")
    assert "NO_INSTALL_SUBDIR" in call
    args = [a for a in call if a != "NO_INSTALL_SUBDIR"]
    args = dict(zip(args[::2], args[1::2]))
    assert args["SOURCE_DIR"] == "${CUTS_ENGINE_SOURCE_DIR}" and args["SCRIPTS"] == '"${CUTS_ENGINE_PYTHON_SCRIPTS}"'
    assert args["DESTINATION_DIR"] == "${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/${CUTS_ENGINE_NAME}"
    assert args["INSTALL_DIR"] == "${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/${CUTS_ENGINE_NAME}"
    assert sets["CUTS_ENGINE_NAME"] == ["CUTSSegmentationLib"] and "GLOB_RECURSE" in text


def test_in_slicer_tests_are_registered():
    (call,) = cmake_calls(MODULE_DIR / "CMakeLists.txt", "slicer_add_python_unittest")
    assert call == ["SCRIPT", "${MODULE_NAME}.py"]
    assert cmake_calls(MODULE_DIR / "Testing" / "CMakeLists.txt", "add_subdirectory") == [["Python"]]
    registered = {
        c[1].replace("${MODULE_NAME}", MODULE_NAME)
        for c in cmake_calls(
            MODULE_DIR / "Testing" / "Python" / "CMakeLists.txt",
            "slicer_add_python_unittest",
        )
    }
    assert registered == {p.name for p in (MODULE_DIR / "Testing" / "Python").glob("*.py")}
    tree = ast.parse((MODULE_DIR / "Testing" / "Python" / f"{MODULE_NAME}ModuleTest.py").read_text(encoding="utf-8"))
    assert any(isinstance(n, ast.ClassDef) and n.name == f"{MODULE_NAME}ModuleTest" for n in tree.body)


def top_cmake() -> dict[str, str]:
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    values = dict(re.findall(r'set\((EXTENSION_\w+)\s+"([^"]*)"\)', text))
    values["project"] = re.search(r"^project\((\w+)\)", text, re.MULTILINE).group(1)
    return values


def s4ext() -> dict[str, str]:
    values = {}
    for line in (REPO / f"{MODULE_NAME}.s4ext").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            values[key] = value.strip()
    return values


#: Properties of Slicer's Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json (additionalProperties: false).
CATALOG_SCHEMA_PROPERTIES = {
    "$schema",
    "category",
    "scm_url",
    "scm_revision",
    "scm_type",
    "build_dependencies",
    "dicom_support_rule",
    "build_subdirectory",
    "enabled",
    "tier",
}
CATALOG_SCHEMA_REQUIRED = {"$schema", "category", "scm_url"}
#: The PyTorch extension's name (its top CMakeLists: project(PyTorch)), as MONAIAuto3DSeg declares it.
PYTORCH_EXTENSION = "PyTorch"


def test_top_cmakelists_follows_the_extension_template():
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    values = top_cmake()
    assert values["project"] == MODULE_NAME
    for key in (
        "HOMEPAGE",
        "CATEGORY",
        "CONTRIBUTORS",
        "DESCRIPTION",
        "ICONURL",
        "SCREENSHOTURLS",
        "DEPENDS",
    ):
        assert values.get(f"EXTENSION_{key}"), f"EXTENSION_{key} missing"
    assert values["EXTENSION_CATEGORY"] == "Segmentation"
    for line in (
        "find_package(Slicer REQUIRED)",
        "include(${Slicer_USE_FILE})",
        f"add_subdirectory({MODULE_NAME})",
        "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
        "include(${Slicer_EXTENSION_CPACK})",
    ):
        assert line in text
    assert re.findall(r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)', text)
    assert re.findall(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)', text)


def test_the_pytorch_extension_is_a_declared_dependency():
    assert top_cmake()["EXTENSION_DEPENDS"].split() == [PYTORCH_EXTENSION]
    assert s4ext()["depends"].split() == [PYTORCH_EXTENSION]
    assert json.loads((REPO / f"{MODULE_NAME}.json").read_text())["build_dependencies"] == [PYTORCH_EXTENSION]


def test_urls_point_to_files_of_this_repository():
    values = top_cmake()
    owner_repo = re.match(r"https://github\.com/([^/]+/[^/]+)$", values["EXTENSION_HOMEPAGE"]).group(1)
    assert owner_repo.split("/")[1].startswith("Slicer"), (
        "ExtensionsIndex wants the repository name to start with Slicer"
    )
    for url in [
        values["EXTENSION_ICONURL"],
        *values["EXTENSION_SCREENSHOTURLS"].split(),
    ]:
        match = re.match(
            rf"https://raw\.githubusercontent\.com/{re.escape(owner_repo)}/main/(.+)$",
            url,
        )
        assert match and (REPO / match.group(1)).is_file(), f"{url} is not a file of {owner_repo}"


def test_s4ext_and_catalog_entry_agree_with_cmakelists():
    cmake, desc = top_cmake(), s4ext()
    for key, name in (
        ("homepage", "HOMEPAGE"),
        ("contributors", "CONTRIBUTORS"),
        ("category", "CATEGORY"),
        ("iconurl", "ICONURL"),
        ("description", "DESCRIPTION"),
        ("screenshoturls", "SCREENSHOTURLS"),
        ("depends", "DEPENDS"),
    ):
        assert desc[key] == cmake[f"EXTENSION_{name}"], key
    assert desc["scm"] == "git" and desc["scmurl"].removesuffix(".git") == cmake["EXTENSION_HOMEPAGE"]
    path = REPO / f"{MODULE_NAME}.json"
    assert b"\r" not in path.read_bytes(), "ExtensionsIndex requires LF line endings"
    entry = json.loads(path.read_text(encoding="utf-8"))
    assert path.stem == cmake["project"]
    assert set(entry) <= CATALOG_SCHEMA_PROPERTIES and CATALOG_SCHEMA_REQUIRED <= set(entry)
    assert re.fullmatch(
        r"https://raw\.githubusercontent\.com/Slicer/Slicer/main/Schemas/"
        r"slicer-extension-catalog-entry-schema-v1\.0\.\d\.json#?",
        entry["$schema"],
    )
    assert entry["category"] == cmake["EXTENSION_CATEGORY"]
    assert entry["scm_url"] == desc["scmurl"] and entry["scm_revision"] == desc["scmrevision"]
    depends = [] if cmake["EXTENSION_DEPENDS"] == "NA" else cmake["EXTENSION_DEPENDS"].split()
    assert entry["build_dependencies"] == depends
    assert isinstance(entry.get("tier", 1), int) and 1 <= entry.get("tier", 1) <= 5
    assert f'translate("qSlicerAbstractCoreModule", "{cmake["EXTENSION_CATEGORY"]}")' in MODULE_FILE.read_text()


def test_icon_is_a_128_pixel_png():
    from PIL import Image

    with Image.open(MODULE_DIR / "Resources" / "Icons" / f"{MODULE_NAME}.png") as icon:
        assert icon.format == "PNG" and icon.size == (128, 128)
        assert len(np.unique(np.asarray(icon.convert("RGB")).reshape(-1, 3), axis=0)) > 6
