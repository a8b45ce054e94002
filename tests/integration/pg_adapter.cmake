# pg_adapter.cmake: integration test of pkg/postgres (tests/integration/pg_adapter_test.c, cmocka)
# against a real PostgreSQL 15. Included from tests/integration/CMakeLists.txt.
# The test reads PC_PG_DSN and fails when it is unset. Under ctest it runs with the `stack`
# fixture and takes PC_PG_DSN from ${PC_STACK_DIR}/stack.env (written by scripts/stack.sh) unless
# the environment already has it. It works in its own scratch database, but ALTER SYSTEM is
# cluster-wide, so it runs serially.
add_executable(pg_adapter_test ${CMAKE_CURRENT_LIST_DIR}/pg_adapter_test.c)
target_link_libraries(pg_adapter_test PRIVATE pc_postgres pc_manifest pc_core PkgConfig::LIBPQ
                      PkgConfig::CMOCKA)

if(NOT TEST integration.pg_adapter)
  find_program(BASH_EXECUTABLE bash REQUIRED)
  if(NOT PC_STACK_DIR)
    set(PC_STACK_DIR ${CMAKE_BINARY_DIR}/stack)
  endif()
  add_test(NAME integration.pg_adapter
           COMMAND ${BASH_EXECUTABLE} -c
                   "if [ -z \"$PC_PG_DSN\" ] && [ -f \"$1/stack.env\" ]; then . \"$1/stack.env\"; fi; exec \"$0\""
                   $<TARGET_FILE:pg_adapter_test> ${PC_STACK_DIR})
  set_tests_properties(integration.pg_adapter PROPERTIES
    LABELS integration TIMEOUT 180 RUN_SERIAL TRUE)
  if(TEST integration.stack_start)
    set_tests_properties(integration.pg_adapter PROPERTIES FIXTURES_REQUIRED stack)
  endif()
endif()
