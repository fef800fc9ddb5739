# Install rules (included from the top-level CMakeLists.txt): tdslc, libtdslrt (static and
# shared), the runtime's public headers, a pkg-config file (lib/pkgconfig/tdsl.pc) and a CMake
# package (lib/cmake/tdsl: tdsl::tdslrt, tdsl::tdslrt_shared, tdsl::tdslc, tdsl_add_model()).
# Every path is relative to the prefix, so `cmake --install build --prefix DIR` works.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(TDSL_CMAKE_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/tdsl)

install(TARGETS tdslc EXPORT tdslTargets RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS tdslrt tdslrt_shared EXPORT tdslTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/runtime/include/tdsl DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h")

# ---- CMake package: find_package(tdsl) + tdsl_add_model(target file.tdsl)
file(STRINGS ${PROJECT_SOURCE_DIR}/runtime/include/tdsl/runtime.h _tdsl_abi REGEX "^#define TDSL_ABI_VERSION ")
string(REGEX REPLACE "^#define TDSL_ABI_VERSION +([0-9]+).*" "\\1" TDSL_ABI_VERSION "${_tdsl_abi}")
install(EXPORT tdslTargets NAMESPACE tdsl:: DESTINATION ${TDSL_CMAKE_INSTALL_DIR} FILE tdslTargets.cmake)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/tdslConfig.cmake.in
  ${PROJECT_BINARY_DIR}/tdslConfig.cmake INSTALL_DESTINATION ${TDSL_CMAKE_INSTALL_DIR})
# 0.x: a new minor version may change the generated interface
write_basic_package_version_file(${PROJECT_BINARY_DIR}/tdslConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/tdslConfig.cmake ${PROJECT_BINARY_DIR}/tdslConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/tdsl_add_model.cmake DESTINATION ${TDSL_CMAKE_INSTALL_DIR})

# ---- pkg-config: written at install time so that the prefix is the one installed to
# (`cmake --install --prefix` overrides the configure-time CMAKE_INSTALL_PREFIX).
foreach(d LIBDIR INCLUDEDIR BINDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${d}}")
    set(TDSL_PC_${d} "${CMAKE_INSTALL_${d}}")
  else()
    set(TDSL_PC_${d} "\${prefix}/${CMAKE_INSTALL_${d}}")
  endif()
endforeach()
install(CODE "
  set(TDSL_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  set(TDSL_PC_LIBDIR [[${TDSL_PC_LIBDIR}]])
  set(TDSL_PC_INCLUDEDIR [[${TDSL_PC_INCLUDEDIR}]])
  set(TDSL_PC_BINDIR [[${TDSL_PC_BINDIR}]])
  set(TDSL_PC_VERSION \"${PROJECT_VERSION}\")
  configure_file(\"${PROJECT_SOURCE_DIR}/cmake/tdsl.pc.in\" \"${PROJECT_BINARY_DIR}/tdsl.pc\" @ONLY)
")
install(FILES ${PROJECT_BINARY_DIR}/tdsl.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
