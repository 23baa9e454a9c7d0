// The doctest runner for all unit tests (layer 1 of ../shared/TESTING.md).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
