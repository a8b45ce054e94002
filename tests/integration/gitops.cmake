# gitops_test: pc_gitops against real repositories (libgit2 writes, the git CLI checks).
# Included from tests/integration/CMakeLists.txt, which registers the test. Needs `git` on PATH.
add_executable(gitops_test ${CMAKE_CURRENT_LIST_DIR}/gitops_test.c)
target_link_libraries(gitops_test PRIVATE pc_gitops pc_core PkgConfig::LIBGIT2 PkgConfig::CMOCKA)
