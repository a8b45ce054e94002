# s3_client.cmake: integration test of pkg/s3 (tests/integration/s3_client_test.c, cmocka) against
# a real S3-compatible server (s3proxy). Included from tests/integration/CMakeLists.txt.
# The test reads PC_S3_ENDPOINT and the other PC_S3_* variables and fails when they are unset.
# Under ctest it runs with the `s3` fixture and takes them from ${PC_S3_DIR}/s3.env (written by
# scripts/s3_stack.sh) unless the environment already has them. Objects live under a prefix
# unique to the run, so it can run next to other tests.
add_executable(s3_client_test ${CMAKE_CURRENT_LIST_DIR}/s3_client_test.c)
target_link_libraries(s3_client_test PRIVATE pc_s3 pc_core PkgConfig::CMOCKA PkgConfig::LIBCRYPTO
                      Threads::Threads)

if(NOT TEST integration.s3_client)
  find_program(BASH_EXECUTABLE bash REQUIRED)
  if(NOT PC_S3_DIR)
    set(PC_S3_DIR ${CMAKE_BINARY_DIR}/s3)
  endif()
  add_test(NAME integration.s3_client
           COMMAND ${BASH_EXECUTABLE} -c
                   "if [ -z \"$PC_S3_ENDPOINT\" ] && [ -f \"$1/s3.env\" ]; then . \"$1/s3.env\"; fi; exec \"$0\""
                   $<TARGET_FILE:s3_client_test> ${PC_S3_DIR})
  set_tests_properties(integration.s3_client PROPERTIES LABELS integration TIMEOUT 300)
  if(TEST integration.s3_start)
    set_tests_properties(integration.s3_client PROPERTIES FIXTURES_REQUIRED s3)
  endif()
endif()
