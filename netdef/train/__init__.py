"""Training: the solver file (config), Caffe's update rules and lr policies, snapshots, and the loop."""
