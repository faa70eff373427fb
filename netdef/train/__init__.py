"""Training: the solver file (config), Caffe's update rules and lr policies (updates, lr_policy), the run's
state and its snapshots (state, snapshot), and the loop (solver, with device, nets, evaluate, log,
run_folder, signals and faults: non-finite losses, snapshots in the way, orphaned temporary files)."""
