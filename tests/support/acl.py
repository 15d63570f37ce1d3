"""A POSIX ACL set as the kernel stores it, in the ``system.posix_acl_access`` extended
attribute: what ``setfacl -m u:UID:r`` writes, without setfacl (not always installed)."""

import os
import struct

#: The extended attribute that holds a file's access ACL.
ACCESS_ACL = "system.posix_acl_access"

_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
_NO_ID = 0xFFFFFFFF


def grant_read(path, uid):
    """Give ``uid`` read access to the file at ``path`` by an ACL entry, its mode's bits
    otherwise kept (the group's become the mask: at least read). Returns the ACL's bytes."""
    mode = os.stat(path).st_mode
    entries = [(_USER_OBJ, (mode >> 6) & 7, _NO_ID), (_USER, 4, uid),
               (_GROUP_OBJ, (mode >> 3) & 7, _NO_ID), (_MASK, ((mode >> 3) & 7) | 4, _NO_ID),
               (_OTHER, mode & 7, _NO_ID)]
    acl = struct.pack("<I", _VERSION) + b"".join(struct.pack("<HHI", *entry)
                                                  for entry in entries)
    os.setxattr(path, ACCESS_ACL, acl)
    return acl
