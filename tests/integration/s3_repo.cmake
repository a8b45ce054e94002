# s3_repo.cmake: integration test of the S3 backup repository (pkg/backup/repo_s3.c, through
# repo.h; tests/integration/s3_repo_test.c, cmocka) against a real S3-compatible server
# (s3proxy). Included from tests/integration/CMakeLists.txt.
# Like s3_client: it reads the PC_S3_* variables, fails when they are unset, and under ctest runs
# with the `s3` fixture, taking them from ${PC_S3_DIR}/s3.env (written by scripts/s3_stack.sh)
# unless the environment already has them. Objects live under a prefix unique to the run.
# integration.s3_repo_rss writes and reads back a 300 MB object and fails when the peak RSS
# passes 80 MB (bounded memory whatever the object's size); label slow.
# integration.s3_repo stops the fixture's s3proxy and starts it again (test_lock_survives_outage,
# through scripts/s3_stack.sh down|up, found by PC_SOURCE_DIR; the directory is PC_S3_DIR from
# s3.env): hence RUN_SERIAL, no other test of the fixture may run meanwhile.
add_executable(s3_repo_test ${CMAKE_CURRENT_LIST_DIR}/s3_repo_test.c)
target_include_directories(s3_repo_test PRIVATE ${CMAKE_SOURCE_DIR}/pkg/backup)
target_compile_definitions(s3_repo_test PRIVATE PC_WHITEBOX_TEST # repo.h is pkg/backup's own
                                                  PC_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
target_link_libraries(s3_repo_test PRIVATE pc_backup pc_s3 pc_core PkgConfig::CMOCKA
                      PkgConfig::JANSSON PkgConfig::LIBCRYPTO Threads::Threads)

if(NOT TEST integration.s3_repo)
  find_program(BASH_EXECUTABLE bash REQUIRED)
  if(NOT PC_S3_DIR)
    set(PC_S3_DIR ${CMAKE_BINARY_DIR}/s3)
  endif()
  set(_pc_s3_env
      "if [ -z \"$PC_S3_ENDPOINT\" ] && [ -f \"$1/s3.env\" ]; then . \"$1/s3.env\"; fi; exec \"$0\" \"\${@:2}\"")
  add_test(NAME integration.s3_repo
           COMMAND ${BASH_EXECUTABLE} -c "${_pc_s3_env}" $<TARGET_FILE:s3_repo_test> ${PC_S3_DIR})
  set_tests_properties(integration.s3_repo PROPERTIES LABELS integration TIMEOUT 300
                                                       RUN_SERIAL TRUE)
  add_test(NAME integration.s3_repo_rss
           COMMAND ${BASH_EXECUTABLE} -c "${_pc_s3_env}" $<TARGET_FILE:s3_repo_test> ${PC_S3_DIR}
                   --rss 300)
  set_tests_properties(integration.s3_repo_rss PROPERTIES LABELS "integration;slow" TIMEOUT 600)
  if(TEST integration.s3_start)
    set_tests_properties(integration.s3_repo integration.s3_repo_rss PROPERTIES
                         FIXTURES_REQUIRED s3)
  endif()
endif()
