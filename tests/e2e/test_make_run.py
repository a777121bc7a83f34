"""`make run` (tools/run.sh, issue 17 item 8): a config whose secrets are missing here stops with
`tollgate check`'s short list of errors before Envoy starts; a good one prints one line when the
gateway is ready, serves, and stops on Ctrl-C, Envoy with it."""

import os
import signal
import subprocess
import threading
import time
import urllib.request

import openai
import yaml

from conftest import MASTER_KEY
from harness import CLI, ENVOY, FILTER, MODULE, ROOT, WASM, check_built, free_port

SCRIPT = os.path.join(ROOT, "tools", "run.sh")
OPENAI_KEY = "sk-test-openai-Zq3XkP9vW2mT7yR4"


def run_env(tmp_path, config, **extra):
    check_built()
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "TOLLGATE_MASTER_KEY")}
    env.update({
        "CONFIG": str(path), "CLI": CLI, "ENVOY": ENVOY, "OUT": str(tmp_path / "build"),
        "LISTEN": f"127.0.0.1:{free_port()}", "ADMIN": f"127.0.0.1:{free_port()}", "CONCURRENCY": "1",
        "FILTER": "--module" if FILTER == "module" else "--wasm", "FILTER_PATH": MODULE if FILTER == "module" else WASM,
        "READY_TIMEOUT": "30",
    })
    env.update(extra)
    return env


def config_for(mock):
    return {
        "model_list": [{"model_name": "gpt", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_base": f"{mock.base_url}/v1", "api_key": "os.environ/OPENAI_API_KEY"}}],
        "litellm_settings": {"set_verbose": False},
        "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"},
    }


def test_makefile_runs_the_script():
    out = subprocess.run(["make", "-n", "run", "run-module"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert out.count("tools/run.sh") == 2, out


def test_missing_secrets_stop_before_envoy_with_the_error_list(tmp_path, mocks):
    env = run_env(tmp_path, config_for(mocks["openai"]), TOLLGATE_MASTER_KEY=MASTER_KEY)
    started = time.monotonic()
    p = subprocess.run([SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0, p.stdout + p.stderr
    assert time.monotonic() - started < 10
    lines = (p.stdout + p.stderr).splitlines()
    assert lines[0] == ("error: model_list[0].litellm_params.api_key: environment variable OPENAI_API_KEY is not set "
                        "(add it to Envoy's environment; `tollgate render` lists it in host_env_keys)"), lines
    assert "1 error(s): the gateway would refuse to start" in lines
    # Short: the errors, check's summary and one line saying Envoy was not started; nothing of Envoy's.
    assert len(lines) == 3, lines
    assert not any("[info]" in l or "warning:" in l for l in lines), lines
    assert not os.path.exists(os.path.join(env["OUT"], "envoy.yaml"))
    assert not os.path.exists(os.path.join(env["OUT"], "envoy-module.yaml"))


def read_line(stream, timeout):
    """One line from a pipe, or None after `timeout` seconds."""
    out = []
    t = threading.Thread(target=lambda: out.append(stream.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return out[0] if out else None


def test_a_good_config_prints_one_ready_line_and_serves(tmp_path, mocks):
    mock = mocks["openai"]
    env = run_env(tmp_path, config_for(mock), OPENAI_API_KEY=OPENAI_KEY, TOLLGATE_MASTER_KEY=MASTER_KEY)
    p = subprocess.Popen([SCRIPT], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        line = read_line(p.stdout, 40)
        assert line, p.poll()
        form = "dynamic module" if FILTER == "module" else ".wasm"
        assert line.startswith(f"tollgate: ready on http://{env['LISTEN']}/v1 ({form}; admin http://{env['ADMIN']}; "
                               "1 config warning(s)"), line
        client = openai.OpenAI(base_url=f"http://{env['LISTEN']}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
        r = client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content
        # Envoy's own output went to its log file, not to the terminal.
        log_name = "envoy-module.log" if FILTER == "module" else "envoy.log"
        with open(os.path.join(env["OUT"], log_name)) as f:
            assert "tollgate: configured 1 deployments" in f.read()

        p.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = p.communicate(timeout=30)
        assert p.returncode == 130, (p.returncode, out, err)
        assert out == "" and err == "", (out, err)  # nothing past the ready line
        # Envoy stopped with the script.
        try:
            urllib.request.urlopen(f"http://{env['ADMIN']}/ready", timeout=1)
            raise AssertionError("Envoy still answers after the script stopped")
        except OSError:
            pass
    finally:
        try:  # the script and whatever it started, were anything left
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=10)
