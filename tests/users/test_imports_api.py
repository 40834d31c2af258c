"""CSV imports over HTTP: upload, run the queued job, then counts and row errors."""

from __future__ import annotations

from typing import Any

from tests.conftest import Tenant
from tests.users.support import all_users, declare, feed, problem, put

CSV = {"Content-Type": "text/csv"}


def _upload(tenant: Tenant, text: str | bytes, **params: str) -> dict[str, Any]:
    content = text.encode() if isinstance(text, str) else text
    response = tenant.http.post("/v1/imports", content=content, headers=CSV, params=params)
    assert response.status_code == 202, response.text
    return dict(response.json())


def _run(tenant: Tenant, import_id: str) -> dict[str, Any]:
    tenant.backend.runtime.jobs.run_now("users.run_import", import_id=import_id)
    response = tenant.http.get(f"/v1/imports/{import_id}")
    assert response.status_code == 200
    return dict(response.json())


def _errors(tenant: Tenant, import_id: str, **params: int) -> list[dict[str, Any]]:
    response = tenant.http.get(f"/v1/imports/{import_id}/errors", params=params)
    assert response.status_code == 200
    return list(response.json())


def test_an_import_upserts_rows_and_reports_row_errors(tenant: Tenant) -> None:
    declare(tenant, "score", "number")
    declare(tenant, "vip", "boolean")
    put(tenant, "u2", first_name="Kept", last_name="Old")
    put(tenant, "gone")
    tenant.http.delete("/v1/users/gone")
    text = (
        "external_id,email,first_name,last_name,phone,country,tags.plan,score,custom.vip\n"
        "u1, Ann@Example.com ,Ann,Lee,010-1234-5678,KR,pro,42,yes\n"
        "u2,,,New,,,,,\n"  # empty cells leave fields alone
        "\n"  # blank lines are skipped, not counted
        "u3,not-an-email,Bad,,,,,,\n"
        'u4,d@example.com,"Multi\nLine",,,,,3.5,no\n'
        "u5,,,,,,,lots,\n"
        ",nobody@example.com,,,,,,,\n"
        "gone,,Back,,,,,,\n"
    )
    created = _upload(tenant, text, filename="people.csv")
    assert created["status"] == "queued"
    assert created["filename"] == "people.csv"
    assert created["total_rows"] == 7
    assert created["processed_rows"] == 0
    assert tenant.http.get("/v1/users/u1").status_code == 404  # nothing applied yet

    done = _run(tenant, created["id"])
    assert done["status"] == "completed"
    assert done["finished_at"] is not None
    assert (
        done["processed_rows"],
        done["created_count"],
        done["updated_count"],
        done["unchanged_count"],
        done["failed_count"],
    ) == (7, 2, 1, 0, 4)

    u1 = tenant.http.get("/v1/users/u1").json()
    assert (u1["email"], u1["phone"], u1["country"]) == ("ann@example.com", "+821012345678", "KR")
    assert u1["tags"] == {"plan": "pro"}
    assert u1["custom"] == {"score": 42, "vip": True}
    u2 = tenant.http.get("/v1/users/u2").json()
    assert (u2["first_name"], u2["last_name"]) == ("Kept", "New")
    u4 = tenant.http.get("/v1/users/u4").json()
    assert u4["first_name"] == "Multi\nLine"
    assert u4["custom"] == {"score": 3.5, "vip": False}
    for missing in ("u3", "u5"):
        problem(tenant.http.get(f"/v1/users/{missing}"), 404, "user_not_found")
    gone = tenant.http.get("/v1/users/gone", params={"include_deleted": "true"}).json()
    assert gone["first_name"] is None

    errors = _errors(tenant, created["id"])
    assert [(e["row_number"], e["external_id"], e["code"]) for e in errors] == [
        (3, "u3", "invalid_input"),
        (5, "u5", "invalid_custom_field"),
        (6, None, "invalid_input"),
        (7, "gone", "user_deleted"),
    ]
    assert "email" in errors[0]["message"]
    assert "score" in errors[1]["message"]
    assert "external_id" in errors[2]["message"]
    page = _errors(tenant, created["id"], after_row=3, limit=2)
    assert [e["row_number"] for e in page] == [5, 6]

    rows = [r for r in feed(tenant) if r["origin"] == "import"]
    assert {r["external_id"] for r in rows} == {"u1", "u2", "u4"}
    assert {r["actor"] for r in rows} == {created["id"]}


def test_a_large_import_spans_chunks_with_correct_row_numbers(tenant: Tenant) -> None:
    lines = ["external_id,email"]
    for i in range(1, 1201):
        lines.append(f"u{i},bad{i}" if i in (1, 500, 501, 1200) else f"u{i},u{i}@example.com")
    created = _upload(tenant, "\r\n".join(lines) + "\r\n")
    assert created["total_rows"] == 1200
    done = _run(tenant, created["id"])
    assert (done["processed_rows"], done["created_count"], done["failed_count"]) == (1200, 1196, 4)
    assert [e["row_number"] for e in _errors(tenant, created["id"])] == [1, 500, 501, 1200]
    assert [e["external_id"] for e in _errors(tenant, created["id"])] == [
        "u1",
        "u500",
        "u501",
        "u1200",
    ]
    assert len(all_users(tenant, limit=500)) == 1196
    # Running the finished job again changes nothing.
    seen = feed(tenant)
    again = _run(tenant, created["id"])
    assert again == done
    assert feed(tenant) == seen


def test_reimporting_the_same_rows_counts_them_unchanged(tenant: Tenant) -> None:
    text = "external_id,first_name\na,A\nb,B\n"
    _run(tenant, _upload(tenant, text)["id"])
    second = _run(tenant, _upload(tenant, text)["id"])
    assert (second["created_count"], second["unchanged_count"]) == (0, 2)


def test_unknown_columns_are_refused_up_front(tenant: Tenant) -> None:
    response = tenant.http.post(
        "/v1/imports",
        content=b"external_id,email,shoe_size,tags.\nu1,a@example.com,9,x\n",
        headers=CSV,
    )
    body = problem(response, 422, "invalid_csv")
    assert body["columns"] == ["shoe_size", "tags."]
    assert "shoe_size" in body["detail"]
    assert all_users(tenant) == []


def test_malformed_csv_files_are_422_invalid_csv(tenant: Tenant) -> None:
    for content in (
        b"",
        b"email,first_name\na@example.com,A\n",  # no external_id column
        b"external_id,email,email\nu1,a@example.com,b@example.com\n",
        "external_id,first_name\nu1,Zo\xe9\n".encode("latin-1"),
    ):
        response = tenant.http.post("/v1/imports", content=content, headers=CSV)
        problem(response, 422, "invalid_csv")
    assert all_users(tenant) == []


def test_a_utf8_bom_and_declared_custom_prefix_are_accepted(tenant: Tenant) -> None:
    declare(tenant, "nickname", "string")
    text = "\ufeffexternal_id,custom.nickname,first_name\nu1,Zoë,Zoë\n"
    done = _run(tenant, _upload(tenant, text.encode("utf-8"))["id"])
    assert done["created_count"] == 1
    user = tenant.http.get("/v1/users/u1").json()
    assert (user["first_name"], user["custom"]) == ("Zoë", {"nickname": "Zoë"})


def test_only_csv_is_accepted(tenant: Tenant) -> None:
    response = tenant.http.post("/v1/imports", json={"external_id": "u1"})
    problem(response, 415, "unsupported_media_type")


def test_imports_of_another_workspace_answer_404(tenant: Tenant, other_tenant: Tenant) -> None:
    theirs = _upload(other_tenant, "external_id\nu1\n")
    problem(tenant.http.get(f"/v1/imports/{theirs['id']}"), 404, "import_not_found")
    problem(tenant.http.get(f"/v1/imports/{theirs['id']}/errors"), 404, "import_not_found")
    problem(tenant.http.get("/v1/imports/imp_nope"), 404, "import_not_found")
