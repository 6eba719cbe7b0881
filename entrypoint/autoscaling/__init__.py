"""The scheduler-side autoscaler of a Compute Engine managed instance group of worker VMs
(`gce --autoscale MIN:MAX`): `policy` decides (pure, its damping numbers in one place), `compute`
talks to the Compute API with the VM's own credentials, `scaler` reads the scheduler's demand and
acts. The preload's `autoscale` module starts it in the scheduler."""
