#pragma once

#include <string>
#include <string_view>

namespace nmi::identity {

// Redacts a client id for logs the way the original does (regex `^(\S{4})(\S|\s)*(\S{4})$` →
// `$1##### REDACTED #####$3`): strings of 8 or more characters whose first and last four
// characters are not white space keep those and lose the rest; anything else is returned as is.
// Characters are UTF-8 code points, as Go's regexp counts them.
std::string redactClientId(std::string_view id);

}  // namespace nmi::identity
