"""The contract validator refuses what the gateway cannot route (security review)."""

from __future__ import annotations

import copy

import pytest

from zistboom.registry.contracts import _SPECIAL, contract_for, validate_contract


def good() -> dict:
    return contract_for("x.y", "خدمت", "Service")


def with_path(path: str) -> dict:
    doc = good()
    doc["paths"] = {path: {"get": {"responses": {"200": {"description": "ok"}}}}}
    return doc


def test_demo_contracts_pass():
    for sid in [*_SPECIAL, "some.other-service"]:
        assert validate_contract(contract_for(sid, "خدمت", "Service")) == [], sid


@pytest.mark.parametrize("version", [3.1, 3, "3.garbage", "3.", "3.1.0.1", "2.0", "3.1.0 ", "٣.1", None])
def test_openapi_must_be_a_3x_version_string(version):
    doc = good()
    doc["openapi"] = version
    assert any("openapi" in p for p in validate_contract(doc))


@pytest.mark.parametrize("version", ["3.0", "3.0.3", "3.1.0"])
def test_openapi_good_versions(version):
    doc = good()
    doc["openapi"] = version
    assert validate_contract(doc) == []


def test_at_least_one_operation():
    doc = good()
    doc["paths"] = {"/a": {"summary": "no operations here"}}
    assert any("at least one operation" in p for p in validate_contract(doc))


@pytest.mark.parametrize("path", ["/../../admin", "/a/./b", "/a/..", "/a//b", "/a/", "/r/{a}{b}", "/r/x{a}-{b}",
                                  "/r/{a", "/r/a}", "/r/{}", "/r/{a b}", "/r/{a}/{a}", "/r/{{a}}"])
def test_bad_paths_refused(path):
    assert any(repr(path) in p for p in validate_contract(with_path(path))), path


@pytest.mark.parametrize("path", ["/", "/fines/{plate}", "/a/{id}/b/{sub_id}", "/files/{name}.json", "/v1.2/x"])
def test_good_paths_accepted(path):
    assert validate_contract(with_path(path)) == []


def test_responses_required_and_idempotent_boolean():
    doc = good()
    bad = copy.deepcopy(doc)
    del bad["paths"]["/inquiry"]["get"]["responses"]
    assert any("responses" in p for p in validate_contract(bad))
    bad = copy.deepcopy(doc)
    bad["paths"]["/inquiry"]["get"]["responses"] = []
    assert any("responses" in p for p in validate_contract(bad))
    bad = copy.deepcopy(doc)
    bad["paths"]["/inquiry"]["get"]["x-idempotent"] = "yes"
    assert any("x-idempotent" in p for p in validate_contract(bad))
