// Declarations only: see csrc/gloo-decls/README.md.
#pragma once
#include <chrono>

namespace gloo {
// A group's connections; ProcessGroupGloo holds it by shared_ptr and (inline) sets its timeout.
class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};
}  // namespace gloo
