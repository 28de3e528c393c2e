"""fastfedmsg-replay: the corpus goes through fastfedmsg to another process intact.

The unit tests pin split_topic with hand-written tables.  The integration
tests run ``python -m fastfedmsg.tools.replay`` (the fastfedmsg-replay entry
point) from a folder holding a broken ./fedmsg.d with FEDMSG_CONFIG unset,
and check that the subscriber's verdict can also come out negative: a
damaged, a missing and an unreadable message are each caught.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

import fastfedmsg
from fastfedmsg.tools import replay
from fastfedmsg.tools.common import split_topic
from conftest import CORPUS, free_port, load_corpus

PACKAGE_ROOT = pathlib.Path(fastfedmsg.__file__).resolve().parent.parent
RUN_TIMEOUT = 90


# -- split_topic -------------------------------------------------------------------

@pytest.mark.parametrize("full, prefix, environment, modname, topic", [
    ("org.fedoraproject.prod.buildsys.build.state.change",
     "org.fedoraproject", "prod", "buildsys", "build.state.change"),
    ("org.fedoraproject.stg.wiki.upload.complete", "org.fedoraproject", "stg", "wiki",
     "upload.complete"),
    ("org.fedoraproject.prod.git.branch", "org.fedoraproject", "prod", "git", "branch"),
    ("io.pagure.prod.pagure.issue.new", "io.pagure", "prod", "pagure", "issue.new"),
    ("org.centos.prod.ci.pipeline.complete", "org.centos", "prod", "ci", "pipeline.complete"),
    ("org.release-monitoring.prod.anitya.project.map.new",
     "org.release-monitoring", "prod", "anitya", "project.map.new"),
    # Too few components after the prefix: modname is the first component.
    ("fedoracollege.content.edit", None, None, "fedoracollege", "content.edit"),
    ("org.fedoraproject.prod.x", None, None, "org", "fedoraproject.prod.x"),
    ("a.b", None, None, "a", "b"),
])
def test_split_topic(full, prefix, environment, modname, topic):
    parts = split_topic(full, "org.fedoraproject")

    assert (parts.prefix, parts.environment, parts.modname, parts.topic) == (
        prefix, environment, modname, topic)
    assert parts.full_topic == full


def test_split_topic_strips_the_configured_prefix():
    parts = split_topic("com.example.corp.dev.svc.thing", "com.example.corp")

    assert (parts.prefix, parts.environment, parts.modname, parts.topic) == (
        "com.example.corp", "dev", "svc", "thing")


@pytest.mark.parametrize("bad", ["nodots", "a..b", ".a.b", "", 42, None])
def test_split_topic_rejects_what_it_cannot_split(bad):
    with pytest.raises(ValueError, match="topic"):
        split_topic(bad)


def test_every_corpus_topic_splits_and_joins_back():
    for envelope in load_corpus():
        assert split_topic(envelope["topic"]).full_topic == envelope["topic"]


# -- the whole replay, as a user runs it ---------------------------------------------

@pytest.fixture
def stray_folder(tmp_path):
    """A working folder whose ./fedmsg.d holds a broken config file."""
    folder = tmp_path / "cwd"
    (folder / "fedmsg.d").mkdir(parents=True)
    (folder / "fedmsg.d" / "broken.py").write_text("config = {  # not Python\n")
    return folder


def run_replay(*args, cwd):
    env = {key: value for key, value in os.environ.items() if key != "FEDMSG_CONFIG"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT),
                                                      env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "fastfedmsg.tools.replay", *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)


def summary_counts(stdout):
    match = re.search(r"received intact (\d+), damaged (\d+), missing (\d+)", stdout)
    assert match, stdout
    return tuple(int(n) for n in match.groups())


@pytest.mark.integration
def test_replay_entry_point_is_declared():
    # The checkout's pyproject.toml, wherever the package under test is installed.
    with open(pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as handle:
        scripts = tomllib.load(handle)["project"]["scripts"]

    assert scripts["fastfedmsg-replay"] == "fastfedmsg.tools.replay:main"


@pytest.mark.integration
def test_replay_of_the_whole_corpus_arrives_intact(stray_folder):
    result = run_replay(cwd=stray_folder)

    assert result.returncode == 0, result.stdout + result.stderr
    assert summary_counts(result.stdout) == (500, 0, 0)
    assert "sent 500 of 500 (0 failed)" in result.stdout
    assert "msg/s" in result.stdout


@pytest.mark.integration
def test_replay_repeat(stray_folder):
    result = run_replay("--repeat", 3, cwd=stray_folder)

    assert result.returncode == 0, result.stdout + result.stderr
    assert summary_counts(result.stdout) == (1500, 0, 0)


@pytest.mark.integration
def test_replay_reports_unreadable_lines_and_sends_the_rest(stray_folder, tmp_path):
    lines = CORPUS.read_text().splitlines()[:20]
    lines.insert(4, "{this is not json")
    lines.insert(9, json.dumps({"no": "topic"}))
    path = tmp_path / "some.jsonl"
    path.write_text("\n".join(lines) + "\n")

    result = run_replay("--file", path, cwd=stray_folder)

    assert result.returncode == 1
    assert summary_counts(result.stdout) == (20, 0, 0)
    assert "%s:5: not valid JSON" % path in result.stderr
    assert "%s:10: not an envelope" % path in result.stderr


# -- the subscriber's verdict can be negative ----------------------------------------------

@pytest.fixture
def subscriber_process(tmp_path):
    """The replay's subscriber (--subscribe) for three corpus messages, started
    against a fastfedmsg publisher that this test drives by hand."""
    corpus = load_corpus()
    chosen = [corpus[0], corpus[100], corpus[200]]
    path = tmp_path / "three.jsonl"
    path.write_text("".join(json.dumps(envelope) + "\n" for envelope in chosen))

    endpoint = "tcp://127.0.0.1:%d" % free_port()
    fastfedmsg.init(files=[], name="t", endpoints={"t": [endpoint]}, post_init_sleep=0,
                    zmq_linger=0, environment="stg")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT),
                                                      env.get("PYTHONPATH")]))
    child = subprocess.Popen(
        [sys.executable, "-m", "fastfedmsg.tools.replay", "--subscribe", endpoint,
         "--file", str(path), "--expect", "3", "--timeout", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    yield child, chosen
    if child.poll() is None:
        child.kill()
    child.stdout.close()
    child.stderr.close()
    child.wait(timeout=RUN_TIMEOUT)


def connect_and_publish(child, messages):
    """Probe until the child is connected, publish ``messages`` as
    (topic, modname, body), send the end marker; return the child's report."""
    sock = fastfedmsg.current_context().socket
    lines = replay.ChildLines(child)
    replay._wait_connected(sock, lines, timeout=20)
    for topic, modname, body in messages:
        fastfedmsg.publish(topic=topic, msg=body, modname=modname)
    sock.send_multipart([replay.END_TOPIC, json.dumps({"sent": len(messages)}).encode()])
    report = lines.readline(20)
    child.wait(timeout=20)
    return json.loads(report), child.stderr.read().decode()


def as_published(envelope):
    parts = split_topic(envelope["topic"])
    return parts.topic, parts.modname, envelope["msg"]


def test_subscriber_counts_intact_damaged_and_missing(subscriber_process):
    child, chosen = subscriber_process
    stg = [e for e in chosen if e["topic"].startswith("org.fedoraproject.stg.")]
    assert stg, "the fixture needs a staging message: the publisher's environment is stg"
    intact = as_published(stg[0])
    topic, modname, body = as_published(stg[0])
    damaged = (topic, modname, dict(body, extra_field=1))

    report, err = connect_and_publish(child, [intact, damaged])

    assert child.returncode == 1
    assert (report["received"], report["intact"], report["damaged"], report["missing"]) == (
        2, 1, 1, 1)
    assert report["sent"] == 2
    assert "differs from every corpus body" in err


def test_subscriber_counts_a_wrong_topic_as_damaged(subscriber_process):
    child, chosen = subscriber_process
    # Published with this test's environment (stg), a production message's
    # body lands on the wrong full topic.
    prod = [e for e in chosen if ".prod." in e["topic"]]
    assert prod

    report, err = connect_and_publish(child, [as_published(prod[0])])

    assert (report["intact"], report["damaged"], report["missing"]) == (0, 1, 2)
    assert "no corpus message has this topic" in err
