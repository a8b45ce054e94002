# kafka_adapter.cmake: integration test of pkg/kafka (tests/integration/kafka_adapter_test.c,
# cmocka) against a real Kafka broker. Included from tests/integration/CMakeLists.txt.
# The test reads PC_KAFKA_BOOTSTRAP and fails when it is unset. Under ctest it runs with the
# `stack` fixture and takes PC_KAFKA_BOOTSTRAP from ${PC_STACK_DIR}/stack.env (written by
# scripts/stack.sh) unless the environment already has it. Topic names are unique per run, so it
# can run next to other tests.
add_executable(kafka_adapter_test ${CMAKE_CURRENT_LIST_DIR}/kafka_adapter_test.c)
target_link_libraries(kafka_adapter_test PRIVATE pc_kafka pc_plan pc_core PkgConfig::CMOCKA)

if(NOT TEST integration.kafka_adapter)
  find_program(BASH_EXECUTABLE bash REQUIRED)
  if(NOT PC_STACK_DIR)
    set(PC_STACK_DIR ${CMAKE_BINARY_DIR}/stack)
  endif()
  add_test(NAME integration.kafka_adapter
           COMMAND ${BASH_EXECUTABLE} -c
                   "if [ -z \"$PC_KAFKA_BOOTSTRAP\" ] && [ -f \"$1/stack.env\" ]; then . \"$1/stack.env\"; fi; exec \"$0\""
                   $<TARGET_FILE:kafka_adapter_test> ${PC_STACK_DIR})
  set_tests_properties(integration.kafka_adapter PROPERTIES LABELS integration TIMEOUT 300)
  if(TEST integration.stack_start)
    set_tests_properties(integration.kafka_adapter PROPERTIES FIXTURES_REQUIRED stack)
  endif()
endif()
