# sink_binary.cmake: integration test of the sink's COPY binary encoder (pkg/sink/convert.c,
# pc_sink_bin_field; tests/integration/sink_binary_test.c, cmocka, white box: sink_int.h) against
# a real PostgreSQL 15: edge values of every binary-capable type loaded by COPY text and by COPY
# binary must land as the same rows. Included from tests/integration/CMakeLists.txt.
# The test reads PC_PG_DSN and fails when it is unset. Under ctest it runs with the `stack`
# fixture and takes PC_PG_DSN from ${PC_STACK_DIR}/stack.env (written by scripts/stack.sh) unless
# the environment already has it. It works in its own scratch schema, so it need not run alone.
add_executable(sink_binary_test ${CMAKE_CURRENT_LIST_DIR}/sink_binary_test.c)
target_compile_definitions(sink_binary_test PRIVATE PC_WHITEBOX_TEST) # sink_int.h is pkg/sink's own
target_link_libraries(sink_binary_test PRIVATE pc_sink pc_core PkgConfig::LIBPQ PkgConfig::JANSSON
                      PkgConfig::CMOCKA)

if(NOT TEST integration.sink_binary)
  find_program(BASH_EXECUTABLE bash REQUIRED)
  if(NOT PC_STACK_DIR)
    set(PC_STACK_DIR ${CMAKE_BINARY_DIR}/stack)
  endif()
  add_test(NAME integration.sink_binary
           COMMAND ${BASH_EXECUTABLE} -c
                   "if [ -z \"$PC_PG_DSN\" ] && [ -f \"$1/stack.env\" ]; then . \"$1/stack.env\"; fi; exec \"$0\""
                   $<TARGET_FILE:sink_binary_test> ${PC_STACK_DIR})
  set_tests_properties(integration.sink_binary PROPERTIES LABELS integration TIMEOUT 120)
  if(TEST integration.stack_start)
    set_tests_properties(integration.sink_binary PROPERTIES FIXTURES_REQUIRED stack)
  endif()
endif()
