// Declarations only: see csrc/gloo-decls/README.md. ProcessGroupGloo.hpp needs nothing from here.
#pragma once
