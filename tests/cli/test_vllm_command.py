"""`sportlens vllm` without a server: what it says when there is nothing to stop or no checkpoint to serve."""
from sportlens.vllm_server import cpu_defaults


def test_stop_without_a_server_is_one_line_and_exit_2(sportlens, tmp_path):
    run = sportlens("vllm", "stop", "--port", "1", env_home=tmp_path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1
    assert "no vLLM server started by sportlens runs on port 1" in run.stderr


def test_start_without_a_checkpoint_is_one_line_and_exit_2(sportlens, tmp_path):
    run = sportlens("vllm", "start", "--model", tmp_path / "missing", env_home=tmp_path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "no checkpoint directory" in run.stderr
    assert not (tmp_path / "vllm").exists()  # nothing was installed for it


def test_on_two_cores_or_fewer_one_process_runs_the_model_on_one_thread_and_the_api_server_normalises():
    environment = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": "1"}
    assert cpu_defaults(1) == cpu_defaults(2) == (environment, ["--no-mm-device-do-normalize"])
    assert cpu_defaults(3) == cpu_defaults(16) == ({}, [])  # vLLM's own worker process and core placement
