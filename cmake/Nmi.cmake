# Build helpers shared by every module: warnings, sanitizers, one static library per module,
# unit tests beside the code.

option(NMI_WERROR "Treat warnings as errors" ON)
set(NMI_SANITIZE "" CACHE STRING "Sanitizers, e.g. address;undefined or thread")

set(NMI_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Woverloaded-virtual
                 -Wold-style-cast -Wimplicit-fallthrough)
if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  list(APPEND NMI_WARNINGS -Wthread-safety)
elseif(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  # g++ 12 at -O2/-O3 reports false -Wrestrict overlaps inside std::string concatenation
  # (GCC bug 105651).
  list(APPEND NMI_WARNINGS -Wno-restrict)
endif()
if(NMI_WERROR)
  list(APPEND NMI_WARNINGS -Werror)
endif()

if(NMI_SANITIZE)
  string(REPLACE ";" "," _nmi_san "${NMI_SANITIZE}")
  add_compile_options(-fsanitize=${_nmi_san} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${_nmi_san})
  if("undefined" IN_LIST NMI_SANITIZE AND CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    # clang 14's -fsanitize=function (part of "undefined") emits prologue data that the
    # coroutine splitter breaks: "error: Cannot represent a difference across sections".
    add_compile_options(-fno-sanitize=function)
  endif()
endif()

# Boost 1.74's Asio enables C++20 coroutines for clang only with the Coroutines TS; say so.
add_compile_definitions(BOOST_ASIO_HAS_CO_AWAIT=1 BOOST_ASIO_HAS_STD_COROUTINE=1
                        BOOST_ASIO_NO_DEPRECATED=1 BOOST_BEAST_USE_STD_STRING_VIEW=1)

option(NMI_COVERAGE "Instrument for gcov/gcovr line coverage" OFF)
if(NMI_COVERAGE)
  add_compile_options(--coverage -O0)
  add_link_options(--coverage)
endif()

find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  set(CMAKE_CXX_COMPILER_LAUNCHER "${CCACHE_PROGRAM}")
endif()

# nmi_module(NAME SOURCES a.cc b.cc DEPS nmi_common Boost::headers ...)
# A static library nmi_<NAME>; includes are rooted at src/.
function(nmi_module name)
  cmake_parse_arguments(M "" "" "SOURCES;DEPS" ${ARGN})
  add_library(nmi_${name} STATIC ${M_SOURCES})
  target_include_directories(nmi_${name} PUBLIC "${PROJECT_SOURCE_DIR}/src")
  target_compile_options(nmi_${name} PRIVATE ${NMI_WARNINGS})
  target_link_libraries(nmi_${name} PUBLIC ${M_DEPS})
  set_property(GLOBAL APPEND PROPERTY NMI_MODULES ${name})
endfunction()

# Writes the module graph as built, one line per module: "<module>: <modules it links>", for the
# layering test (scripts/check-layers compares it with the table in docs/design.md).
function(nmi_write_module_graph path)
  get_property(modules GLOBAL PROPERTY NMI_MODULES)
  set(text "")
  foreach(module IN LISTS modules)
    get_target_property(libs nmi_${module} LINK_LIBRARIES)
    set(uses "")
    foreach(lib IN LISTS libs)
      if(lib MATCHES "^nmi_(.+)$")
        list(APPEND uses ${CMAKE_MATCH_1})
      endif()
    endforeach()
    list(JOIN uses " " uses)
    string(APPEND text "${module}: ${uses}\n")
  endforeach()
  file(WRITE "${path}" "${text}")
endfunction()

# nmi_unit_test(NAME SOURCES a_test.cc DEPS nmi_x ...): a GoogleTest binary registered with ctest
# under the label `unit`.
function(nmi_unit_test name)
  cmake_parse_arguments(T "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_compile_options(${name} PRIVATE ${NMI_WARNINGS})
  target_include_directories(${name} PRIVATE "${PROJECT_SOURCE_DIR}/src" "${PROJECT_SOURCE_DIR}")
  target_link_libraries(${name} PRIVATE ${T_DEPS} GTest::gmock GTest::gtest_main)
  gtest_discover_tests(${name} PROPERTIES LABELS unit DISCOVERY_TIMEOUT 60)
endfunction()
