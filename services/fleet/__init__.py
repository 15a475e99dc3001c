"""The machines beside the catalog's services: the compute hosts restarted against the new control plane,
and the switchover of the controller's addresses."""
