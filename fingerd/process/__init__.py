"""The root parent and the worker: processes, privileges, files they hold."""
