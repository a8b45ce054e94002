# ingest_driver.cmake: a small driver that runs pc_ingest_run once (tests/integration/
# ingest_driver.c), used by test_ingest.sh when `pipectl run` is not available. The test finds
# it next to pipectl (or via PC_INGEST_DRIVER). Included from tests/integration/CMakeLists.txt.
add_executable(ingest_driver ${CMAKE_CURRENT_LIST_DIR}/ingest_driver.c)
target_link_libraries(ingest_driver PRIVATE pc_ingest pc_manifest pc_core)
set_target_properties(ingest_driver PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
