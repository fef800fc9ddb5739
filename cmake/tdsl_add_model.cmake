# tdsl_add_model(<target> <file.tdsl>
#                [NAME <module>]          C name prefix (default: <target>)
#                [CPU <native|x86-64-v3|x86-64-v4|llvm-cpu>]   [OPT <0|1|2|3>]
#                [DEFINES NAME=VALUE...]  const overrides (-D)
#                [OPTIONS <tdslc args>...])
#
# Compiles a .tdsl model with `tdslc build` as part of the build (again whenever the .tdsl
# or tdslc changes) and makes <target> a static library holding <module>.o. Linking it gives
# the include directory of <module>.h and libtdslrt (both PUBLIC):
#     tdsl_add_model(mlp models/mlp.tdsl)
#     target_link_libraries(app PRIVATE mlp)       # then: #include "mlp.h"
# The runtime it links is ${TDSL_RUNTIME_TARGET} (default tdsl::tdslrt, the static one;
# set it to tdsl::tdslrt_shared for the shared library).
include_guard(GLOBAL)

function(tdsl_add_model target file)
  cmake_parse_arguments(PARSE_ARGV 2 TAM "" "NAME;CPU;OPT" "DEFINES;OPTIONS")
  if(TAM_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "tdsl_add_model(${target}): unexpected arguments: ${TAM_UNPARSED_ARGUMENTS}")
  endif()
  set(name "${target}")
  if(DEFINED TAM_NAME)
    set(name "${TAM_NAME}")
  endif()
  if(NOT name MATCHES "^[A-Za-z_][A-Za-z0-9_]*$")
    message(FATAL_ERROR "tdsl_add_model(${target}): the module name '${name}' is not a C identifier; "
                        "pass NAME <identifier>")
  endif()
  get_filename_component(src "${file}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  if(NOT EXISTS "${src}")
    message(FATAL_ERROR "tdsl_add_model(${target}): no such file: ${src}")
  endif()

  # the compiler and runtime: the installed package's, or this source tree's own targets
  if(TARGET tdsl::tdslc)
    set(tdslc tdsl::tdslc)
  elseif(TARGET tdslc)
    set(tdslc tdslc)
  else()
    message(FATAL_ERROR "tdsl_add_model(${target}): no tdslc; call find_package(tdsl) first")
  endif()
  if(DEFINED TDSL_RUNTIME_TARGET)
    set(runtime "${TDSL_RUNTIME_TARGET}")
  elseif(TARGET tdsl::tdslrt)
    set(runtime tdsl::tdslrt)
  else()
    set(runtime tdslrt)
  endif()

  set(dir "${CMAKE_CURRENT_BINARY_DIR}/tdsl_models/${target}")
  set(args build "${src}" -o "${dir}/${name}.o" --header "${dir}/${name}.h" --name "${name}")
  if(DEFINED TAM_CPU)
    list(APPEND args --cpu "${TAM_CPU}")
  endif()
  if(DEFINED TAM_OPT)
    if(NOT TAM_OPT MATCHES "^[0-3]$")
      message(FATAL_ERROR "tdsl_add_model(${target}): OPT must be 0, 1, 2 or 3, not '${TAM_OPT}'")
    endif()
    list(APPEND args "-O${TAM_OPT}")
  endif()
  foreach(d IN LISTS TAM_DEFINES)
    list(APPEND args -D "${d}")
  endforeach()
  list(APPEND args ${TAM_OPTIONS})

  # one directory per model, so its include directory holds only <module>.h
  file(MAKE_DIRECTORY "${dir}")
  add_custom_command(
    OUTPUT "${dir}/${name}.o" "${dir}/${name}.h"
    COMMAND ${tdslc} ${args}
    DEPENDS "${src}" ${tdslc}
    WORKING_DIRECTORY "${dir}"
    COMMENT "tdslc: compiling model ${name} from ${file}"
    VERBATIM)
  set_source_files_properties("${dir}/${name}.o" PROPERTIES EXTERNAL_OBJECT TRUE GENERATED TRUE)

  add_library(${target} STATIC "${dir}/${name}.o" "${dir}/${name}.h")
  # an archive of one prebuilt object: any enabled language can archive it
  get_property(langs GLOBAL PROPERTY ENABLED_LANGUAGES)
  if("C" IN_LIST langs)
    set_target_properties(${target} PROPERTIES LINKER_LANGUAGE C)
  else()
    set_target_properties(${target} PROPERTIES LINKER_LANGUAGE CXX)
  endif()
  target_include_directories(${target} PUBLIC "${dir}")
  target_link_libraries(${target} PUBLIC ${runtime})
  set_target_properties(${target} PROPERTIES TDSL_MODULE_NAME "${name}" TDSL_HEADER "${dir}/${name}.h")
endfunction()
