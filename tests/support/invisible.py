"""The characters fingerd never sends for being invisible (Unicode categories Cf, Zl and
Zp, contract section 5), on whichever Python runs the tests."""

import sys
import unicodedata

#: Format characters that Unicode's own data (UnicodeData.txt) assigned in 14.0 (U+0890,
#: U+0891) and 15.0 (U+13439 to U+1343F): older Pythons' databases (13.0 in 3.9 and 3.10,
#: 14.0 in 3.11) call them unassigned.
LATER = ("\u0890", "\u0891", *map(chr, range(0x13439, 0x13440)))
#: Unicode 15.0 to 18.0 have 172 (this Python's database may hold more).
INVISIBLE = tuple(sorted({chr(point) for point in range(sys.maxunicode + 1)
                          if unicodedata.category(chr(point)) in ("Cf", "Zl", "Zp")}
                         | set(LATER)))
