"""The package index (pds_kernel.packages.index): what it answers, pure and over a real socket."""

from __future__ import annotations

import hashlib
import http.client
import re

import pytest
from packagefixtures import ThreadedIndex, build_wheel

from pds_kernel.packages.index import not_approved_message, respond
from pds_kernel.packages.wheelhouse import Wheelhouse, read_wheel


@pytest.fixture
def house(tmp_path):
    source = tmp_path / "src"
    wheels = [read_wheel(build_wheel(source, "pds-hello", v)) for v in ("1.0", "1.1")]
    house = Wheelhouse(tmp_path / "house")
    house.add(wheels, source)
    return house


def _get(index: ThreadedIndex, path: str, method: str = "GET", body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", index.server.port, timeout=10)
    conn.request(method, path, body=body)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, data


def test_project_page_lists_the_approved_files_with_their_hashes(house):
    page = respond(house.projects(), "GET", "/simple/pds-hello/")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    links = re.findall(r'href="/files/([^"#]+)#sha256=([0-9a-f]{64})" data-requires-python="&gt;=3.9"', page.body.decode())
    files = {e["file"]: e["sha256"] for e in house.projects()["pds-hello"]}
    assert dict(links) == files and len(files) == 2
    root = respond(house.projects(), "GET", "/simple/")
    assert root.status == 200 and b'href="/simple/pds-hello/"' in root.body


def test_unapproved_project_answers_the_way_to_ask(house):
    page = respond(house.projects(), "GET", "/simple/scikit-learn/")
    assert page.status == 200
    assert not page.headers["Content-Type"].startswith("text/html")  # pip prints a non-HTML type
    assert not_approved_message("scikit-learn") in page.headers["Content-Type"]
    assert "pds packages request scikit-learn" in page.headers["Content-Type"]
    assert 'ws.request_package("scikit-learn")' in page.headers["Content-Type"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_every_writing_method_is_refused(house, method):
    assert respond(house.projects(), method, "/simple/pds-hello/").status == 405


@pytest.mark.parametrize("path", ["/files/../index.json", "/files/%2e%2e/index.json", "/index.json",
                                  "/files/pds_hello-9.9-py3-none-any.whl", "/simple/../files/",
                                  "/simple/PDS_Hello/x", "/", "/files/.lock",
                                  # a line feed after a name the patterns accept (their "$" matched before it)
                                  "/simple/pds-hello/\n", "/simple/pds-hello\n",
                                  "/files/pds_hello-1.0-py3-none-any.whl\n"])
def test_paths_outside_the_approved_files_are_not_found(house, path):
    assert respond(house.projects(), "GET", path).status == 404


def test_non_normalised_name_redirects_to_the_normalised_page(house):
    assert respond(house.projects(), "GET", "/simple/pds-hello").headers["Location"] == "/simple/pds-hello/"
    assert respond(house.projects(), "GET", "/simple").headers["Location"] == "/simple/"


def test_server_serves_exactly_the_listed_bytes(house):
    with ThreadedIndex(house.root) as index:
        entry = house.projects()["pds-hello"][0]
        response, data = _get(index, f"/files/{entry['file']}")
        assert response.status == 200 and hashlib.sha256(data).hexdigest() == entry["sha256"]
        response, data = _get(index, f"/files/{entry['file']}", method="HEAD")
        assert response.status == 200 and data == b"" and int(response.headers["Content-Length"]) == entry["size"]
        # a file put into files/ by hand is not in the manifest: not served
        (house.files_dir / "planted-1.0-py3-none-any.whl").write_bytes(b"x")
        response, _ = _get(index, "/files/planted-1.0-py3-none-any.whl")
        assert response.status == 404
        response, _ = _get(index, "/simple/pds-hello/", method="POST", body=b"upload")
        assert response.status == 405
    assert ("GET", f"/files/{entry['file']}", 200) in index.requests


def test_malformed_and_oversized_requests_get_an_answer(house):
    import socket

    with ThreadedIndex(house.root) as index:
        for raw in (b"GARBAGE\r\n\r\n", b"GET /simple/ HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", index.server.port), timeout=10) as s:
                s.sendall(raw)
                answer = s.recv(100)
            assert answer.split(b" ")[1] in (b"400", b"431"), answer


def test_a_wheel_approved_twice_with_other_bytes_is_refused(tmp_path, house):
    from pds_kernel.errors import IntegrityError

    other = build_wheel(tmp_path / "other", "pds-hello", "1.0", code="VALUE = 'different'\n")
    with pytest.raises(IntegrityError, match="another SHA-256"):
        house.add([read_wheel(other)], other.parent)
