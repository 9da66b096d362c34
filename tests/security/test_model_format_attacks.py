"""Red team: hostile safetensors and ONNX files submitted as models.

The gate lets ONNX and safetensors models out to a checker unattacked (the platform attacks
skops, XGBoost and LightGBM models), so whatever a checker's tools would trip on must be refused
at submission: each test submits one hostile file through the real airlock service and asserts
it is refused with its reason and nothing stays staged. The validators are
pds_kernel/airlock/checks/model_formats.py; docs/ai.md, "Which formats can leave"."""

from __future__ import annotations

import io
import pickle
import zipfile

import pytest
from model_format_support import (
    airlock,
    genuine_onnx,
    genuine_safetensors,
    onnx_nested,
    onnx_with_custom_operator,
    onnx_with_external,
    onnx_with_external_in_a_subgraph,
    safetensors,
    submit,
    tensor,
)

from pds_kernel.airlock.checks.model_formats import MAX_ONNX_DEPTH, MAX_ONNX_FIELDS, MAX_SAFETENSORS_HEADER
from pds_kernel.airlock.staging import RefusedFiles


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    with airlock(tmp_path_factory.mktemp("model-formats")) as (service, settings):
        yield service, settings


def refused(gate, name: str, data: bytes, reason: str) -> None:
    """Submitting ``data`` as ``name`` is refused for ``reason`` and leaves nothing staged."""
    service, settings = gate
    before = {p for p in settings.paths.staging.rglob("*") if p.is_file()}
    with pytest.raises(RefusedFiles) as caught:
        submit(service, name, data, None)
    assert reason in caught.value.reasons[name], caught.value.reasons
    assert {p for p in settings.paths.staging.rglob("*") if p.is_file()} == before


def test_genuine_safetensors_and_onnx_still_go_to_a_checker(gate):
    """The control: real files of both formats pass the validators (to review, unattacked)."""
    service, _ = gate
    for name, data in (("weights.safetensors", genuine_safetensors()), ("model.onnx", genuine_onnx())):
        view = submit(service, name, data, None)
        assert (view.files[0].kind, view.files[0].check_status) == ("model", "review")


# ---- safetensors ------------------------------------------------------------------------------

def test_safetensors_header_length_of_two_to_the_64_is_refused(gate):
    refused(gate, "w.safetensors", safetensors({"w": tensor("F32", [1], [0, 4])}, b"\0" * 4, length=2**64 - 1),
            "header length field says 18446744073709551615 bytes")


def test_safetensors_header_length_beyond_the_end_of_the_file_is_refused(gate):
    refused(gate, "w.safetensors", safetensors(b'{"w": {}}', length=4096), "but only 9 follow")


def test_safetensors_header_larger_than_the_gate_reads_is_refused(gate):
    header = b'{"__metadata__": {"pad": "' + b"x" * MAX_SAFETENSORS_HEADER + b'"}}'
    refused(gate, "w.safetensors", safetensors(header), "larger than the gate reads")


def test_safetensors_tensor_pointing_past_the_data_is_refused(gate):
    refused(gate, "w.safetensors", safetensors({"w": tensor("F32", [1024], [0, 4096])}, b"\0" * 8),
            "a tensor points outside the file")


def test_safetensors_overlapping_tensors_are_refused(gate):
    header = {"a": tensor("F32", [2], [0, 8]), "b": tensor("F32", [2], [4, 12])}
    refused(gate, "w.safetensors", safetensors(header, b"\0" * 12), "tensors overlap or leave a gap")


def test_safetensors_negative_offsets_are_refused(gate):
    refused(gate, "w.safetensors", safetensors({"w": tensor("F32", [2], [-8, 0])}, b"\0" * 8),
            "are not [begin, end] with 0 <= begin <= end")


def test_safetensors_hidden_bytes_between_tensors_are_refused(gate):
    header = {"a": tensor("F32", [1], [0, 4]), "b": tensor("F32", [1], [104, 108])}
    refused(gate, "w.safetensors", safetensors(header, b"\0" * 4 + b"185127512345678 " * 6 + b"\0" * 8),
            "starts at byte 104 of the data, not 4")


def test_safetensors_trailing_bytes_after_the_tensors_are_refused(gate):
    refused(gate, "w.safetensors", safetensors({"w": tensor("F32", [1], [0, 4])}, b"\0" * 4 + b"hidden rows"),
            "bytes follow that no tensor describes")


def test_safetensors_header_that_is_not_json_is_refused(gate):
    refused(gate, "w.safetensors", safetensors(b"{w: F32 [1] 0..4}", b"\0" * 4), "is not a UTF-8 JSON object")


def test_safetensors_header_nested_a_hundred_thousand_deep_is_refused(gate):
    header = b'{"w": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    refused(gate, "w.safetensors", safetensors(header), "nested too deeply")


def test_safetensors_entry_with_extra_structure_is_refused(gate):
    header = {"w": {**tensor("F32", [1], [0, 4]), "loader": {"module": "os", "call": "system"}}}
    refused(gate, "w.safetensors", safetensors(header, b"\0" * 4), "is not {dtype, shape, data_offsets}")


def test_safetensors_unknown_dtype_is_refused(gate):
    refused(gate, "w.safetensors", safetensors({"w": tensor("OBJECT", [1], [0, 8])}, b"\0" * 8),
            "unknown dtype 'OBJECT'")


def test_safetensors_tensor_named_twice_is_refused(gate):
    header = b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, ' \
             b'"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}'
    refused(gate, "w.safetensors", safetensors(header, b"\0" * 8), "appears twice")


# ---- ONNX ------------------------------------------------------------------------------------

def test_onnx_external_data_reaching_up_to_etc_passwd_is_refused(gate):
    refused(gate, "model.onnx", onnx_with_external("../../etc/passwd"),
            "keeps its data in an external file at '../../etc/passwd'")


def test_onnx_external_data_at_an_absolute_path_is_refused(gate):
    refused(gate, "model.onnx", onnx_with_external("/home/alice/results/cohort.csv"),
            "external file at '/home/alice/results/cohort.csv'")


def test_onnx_external_data_hidden_in_a_subgraph_is_refused(gate):
    refused(gate, "model.onnx", onnx_with_external_in_a_subgraph("../../etc/shadow"),
            "external file at '../../etc/shadow'")


def test_onnx_custom_operator_domain_is_refused(gate):
    refused(gate, "model.onnx", onnx_with_custom_operator(), "custom domain 'com.example.native'")


def test_onnx_subgraphs_nested_beyond_the_limit_are_refused(gate):
    refused(gate, "model.onnx", onnx_nested(MAX_ONNX_DEPTH // 3 + 2), f"nested more than {MAX_ONNX_DEPTH} deep")


def test_onnx_of_a_million_one_number_fields_is_refused(gate):
    """A genuine model followed by 1,000,001 unknown varint fields (protobuf readers skip them)."""
    field_99 = bytes([0x98, 0x06, 0x00])  # key: field 99, wire type 0; value 0
    refused(gate, "model.onnx", genuine_onnx() + field_99 * (MAX_ONNX_FIELDS + 1), "protobuf fields")


def test_truncated_onnx_is_refused(gate):
    data = genuine_onnx()
    refused(gate, "model.onnx", data[: len(data) - 7], "not a well-formed ONNX (protobuf) file")


def test_skops_zip_named_onnx_is_refused(gate):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as out:  # what skops.io.dumps writes: a schema and arrays
        out.writestr("schema.json", '{"__class__": "DecisionTreeClassifier", "__module__": "sklearn.tree"}')
        out.writestr("1.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }")
    refused(gate, "model.onnx", archive.getvalue(), "is named .onnx but its content is a skops model")


def test_pickle_named_onnx_is_refused(gate):
    refused(gate, "model.onnx", pickle.dumps({"rows": [[185, 1]]}, protocol=4), "this file is a pickle")
