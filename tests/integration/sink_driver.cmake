# sink_driver.cmake: pc-sink-driver, the harness tests/integration/test_sink.sh uses to run the
# sink worker (pc_sink_run) and to produce randomuser-shaped test records. Included from
# tests/integration/CMakeLists.txt; the binary lands next to pipectl (${CMAKE_BINARY_DIR}).
add_executable(pc-sink-driver ${CMAKE_CURRENT_LIST_DIR}/sink_driver.c)
target_link_libraries(pc-sink-driver PRIVATE pc_sink pc_worker pc_manifest pc_core
                      PkgConfig::RDKAFKA PkgConfig::JANSSON)
set_target_properties(pc-sink-driver PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
