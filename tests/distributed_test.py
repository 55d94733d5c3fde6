"""Which launches make one multi-process job: explicit variables, an srun step, an Open MPI run."""

from absl.testing import absltest

from ssl_ct import distributed

_SRUN = {
  "SLURM_JOB_ID": "4242",
  "SLURM_STEP_NODELIST": "node[001-002]",
  "SLURM_NTASKS": "4",
  "SLURM_STEP_NUM_TASKS": "4",
  "SLURM_PROCID": "3",
  "SLURM_LOCALID": "1",
}


class ClusterTest(absltest.TestCase):
  def test_explicit_variables_win(self):
    env = {**_SRUN, "SSL_CT_COORDINATOR": "h:1234", "SSL_CT_NUM_PROCESSES": "2", "SSL_CT_PROCESS_ID": "1"}
    self.assertEqual(distributed.cluster_of(env), ("explicit", 1, 2))

  def test_an_srun_step_is_one_job(self):
    self.assertEqual(distributed.cluster_of(_SRUN), ("slurm", 3, 4))
    self.assertEqual(distributed.process_id_from_env(_SRUN), 3)

  def test_a_batch_script_or_a_partial_step_runs_alone(self):
    batch = {k: v for k, v in _SRUN.items() if k != "SLURM_STEP_NUM_TASKS"}  # sbatch's own shell
    self.assertIsNone(distributed.cluster_of(batch))
    self.assertIsNone(distributed.cluster_of({**_SRUN, "SLURM_STEP_NUM_TASKS": "2"}))  # jax would wait for 4
    self.assertIsNone(distributed.cluster_of({**_SRUN, "SLURM_NTASKS": "1", "SLURM_STEP_NUM_TASKS": "1"}))
    self.assertIsNone(distributed.cluster_of({**_SRUN, "SSL_CT_DISTRIBUTED": "0"}))
    self.assertEqual(distributed.process_id_from_env({}), 0)

  def test_open_mpi(self):
    env = {"OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:3491", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"}
    self.assertEqual(distributed.cluster_of(env), ("ompi", 1, 2))
    self.assertIsNone(distributed.cluster_of({**env, "OMPI_COMM_WORLD_SIZE": "1"}))


if __name__ == "__main__":
  absltest.main()
