# nocodb_adapter.cmake: integration test of pkg/nocodb (tests/integration/nocodb_adapter_test.c,
# cmocka) against a real NocoDB and the stack's real PostgreSQL. Included from
# tests/integration/CMakeLists.txt. The test reads PC_NOCODB_URL/TOKEN/EMAIL/PASSWORD and
# PC_PG_PORT and fails when they are unset. Under ctest it requires the `stack` and `nocodb`
# fixtures and takes those variables from ${PC_STACK_DIR}/stack.env and
# ${PC_NOCODB_DIR}/nocodb.env (written by scripts/stack.sh and scripts/nocodb.sh). Its database,
# role and base carry unique names, so it can run next to other tests.
add_executable(nocodb_adapter_test ${CMAKE_CURRENT_LIST_DIR}/nocodb_adapter_test.c)
target_compile_definitions(nocodb_adapter_test PRIVATE PC_WHITEBOX_TEST) # nocodb_int.h
target_link_libraries(nocodb_adapter_test PRIVATE pc_nocodb pc_core PkgConfig::LIBPQ
                      PkgConfig::JANSSON PkgConfig::LIBCURL PkgConfig::CMOCKA)

if(NOT TEST integration.nocodb_adapter)
  find_program(BASH_EXECUTABLE bash REQUIRED)
  if(NOT PC_STACK_DIR)
    set(PC_STACK_DIR ${CMAKE_BINARY_DIR}/stack)
  endif()
  if(NOT PC_NOCODB_DIR)
    set(PC_NOCODB_DIR ${CMAKE_BINARY_DIR}/nocodb)
  endif()
  add_test(NAME integration.nocodb_adapter
           COMMAND ${BASH_EXECUTABLE} -c
                   "if [ -z \"$PC_NOCODB_URL\" ]; then . \"$1/stack.env\" && . \"$2/nocodb.env\"; fi; exec \"$0\""
                   $<TARGET_FILE:nocodb_adapter_test> ${PC_STACK_DIR} ${PC_NOCODB_DIR})
  set_tests_properties(integration.nocodb_adapter PROPERTIES LABELS integration TIMEOUT 300)
  if(TEST integration.nocodb_start)
    set_tests_properties(integration.nocodb_adapter PROPERTIES FIXTURES_REQUIRED "stack;nocodb")
  endif()
endif()
