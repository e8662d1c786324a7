#include "Hints.h"
