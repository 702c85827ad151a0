"""The task jobs' RPCs (wsapp/demo/jobs.py): every job has a real owner, who alone lists,
cancels and watches it, with a running-job allowance of their own; callers without a user
are refused with a hint to sign in."""

from __future__ import annotations

import pytest


def rpc(client, method: str, params=None) -> dict:
    return client.request("rpc", method=method, params=params)


def result(client, method: str, params=None):
    reply = rpc(client, method, params)
    assert reply["op"] == "ok", reply
    return reply["result"]


def test_a_job_is_its_owners_alone(demo):
    ann, ben = demo.connect("ann"), demo.connect("ben")
    listing = result(ann, "list_jobs")
    assert listing["channel"] == "tasks:ann" and listing["jobs"] == []
    ann.ok("subscribe", channel="tasks:ann")
    job = result(ann, "start_job", {"steps": 40, "step_seconds": 0.1, "label": "mine"})
    assert (job["label"], job["state"], job["steps"]) == ("mine", "running", 40)
    # Its steps reach its owner's channel...
    step = ann.wait_for(lambda f: f.get("op") == "message" and f["data"]["job"]["step"] >= 2)
    assert step["channel"] == "tasks:ann" and step["data"]["job"]["id"] == job["id"]
    # ...which nobody else may watch; nor do they see, or cancel, the job.
    ben.expect_error(ben.request("subscribe", channel="tasks:ann"), "forbidden")
    assert result(ben, "list_jobs")["jobs"] == []
    ben.expect_error(rpc(ben, "cancel_job", {"id": job["id"]}), "not_found")
    assert [j["id"] for j in result(ann, "list_jobs")["jobs"]] == [job["id"]]
    assert result(ann, "cancel_job", {"id": job["id"]})["state"] == "cancelled"


def test_each_user_has_their_own_allowance_of_running_jobs(demo):
    cat, dan = demo.connect("cat"), demo.connect("dan")
    started = [result(cat, "start_job", {"steps": 50, "step_seconds": 0.2})["id"]
               for _ in range(4)]
    reply = rpc(cat, "start_job", {"steps": 50, "step_seconds": 0.2})
    cat.expect_error(reply, "too_many_jobs")
    assert reply["reason"] == "you have 4 jobs running (at most 4); wait or cancel one"
    assert result(dan, "start_job", {"steps": 5, "step_seconds": 0.1})["state"] == "running"
    for job_id in started:
        assert result(cat, "cancel_job", {"id": job_id})["state"] == "cancelled"
    assert result(cat, "start_job", {"steps": 5, "step_seconds": 0.1})["state"] == "running"


def test_without_a_user_the_rpcs_say_to_sign_in(demo):
    anonymous = demo.connect()
    for method in ("start_job", "list_jobs", "cancel_job"):
        reply = rpc(anonymous, method, {"id": "x"})
        anonymous.expect_error(reply, "unauthorized")
        assert "sign in" in reply["reason"]
    anonymous.expect_error(anonymous.request("subscribe", channel="tasks:ann"), "unauthorized")


@pytest.mark.parametrize("params,says", [
    ({"steps": 0}, "steps must be 1..200"),
    ({"steps": 10_000}, "steps must be 1..200"),
    ({"steps": "5"}, "steps must be a number"),
    ({"steps": True}, "steps must be a number"),
    ({"steps": 2.5}, "steps must be a whole number"),
    ({"step_seconds": 0}, "step_seconds must be 0.05..5.0"),
    ({"steps": 200, "step_seconds": 5}, "a job may last at most 300 s"),
    ({"label": 5}, "label must be a string"),
    ([1, 2], "params must be a JSON object"),
])
def test_bad_parameters_are_refused_with_the_reason(demo, params, says):
    eve = demo.connect("eve")
    reply = rpc(eve, "start_job", params)
    eve.expect_error(reply, "bad_request")
    assert reply["reason"] == says
    eve.expect_error(rpc(eve, "cancel_job", {"id": "nope"}), "not_found")
    eve.expect_error(rpc(eve, "cancel_job", {"id": ["not", "a", "string"]}), "not_found")
