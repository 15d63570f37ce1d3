"""The users file as the baselines read it: ``user:status`` lines, nothing checked."""


def read_users(path):
    users = {}
    with open(path, "rb") as f:
        for line in f:
            if b":" in line and not line.startswith(b"#"):
                name, status = line.rstrip(b"\r\n").split(b":", 1)
                users[name] = status
    return users
