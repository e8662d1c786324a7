// Everything is in the header (static inline); SwiftPM wants a source file.
#include "MemoryHints.h"
