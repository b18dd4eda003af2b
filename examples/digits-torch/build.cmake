# examples/digits-torch, built by `make build` into build/examples/digits-torch/ (thaw.yaml,
# app.py, model.pt: the bundle scripts/run.sh deploys). fetch_digits.sh takes the data out of
# Debian's python3-sklearn .deb; train.py trains with Debian's python3-torch, prints the
# held-out accuracy and writes that held-out split, with its labels, beside the bundle for
# tests/examples_test.cc. Included from the top-level CMakeLists.txt after tests/, since it
# makes integration_tests depend on the bundle.
set(THAW_TORCH_PYTHON /usr/bin/python3 CACHE FILEPATH
    "Python that has Debian's python3-torch, for training examples/digits-torch")
set(digits_src ${CMAKE_SOURCE_DIR}/examples/digits-torch)
set(digits_out ${CMAKE_BINARY_DIR}/examples/digits-torch)
set(digits_csv ${CMAKE_BINARY_DIR}/examples/digits-torch-data/digits.csv.gz)
set(digits_testdata ${CMAKE_BINARY_DIR}/examples/digits-torch-testdata.json)

add_custom_command(OUTPUT ${digits_csv}
  COMMAND ${digits_src}/fetch_digits.sh ${CMAKE_BINARY_DIR}/examples/digits-torch-data/deb
          ${digits_csv}
  DEPENDS ${digits_src}/fetch_digits.sh
  COMMENT "digits-torch: fetching digits.csv.gz from Debian's python3-sklearn package"
  VERBATIM)
add_custom_command(OUTPUT ${digits_out}/model.pt ${digits_testdata}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${digits_out}
  COMMAND ${THAW_TORCH_PYTHON} ${digits_src}/train.py ${digits_csv} ${digits_out}/model.pt
          ${digits_testdata}
  DEPENDS ${digits_src}/train.py ${digits_csv}
  COMMENT "digits-torch: training the model"
  VERBATIM)
add_custom_command(OUTPUT ${digits_out}/thaw.yaml ${digits_out}/app.py
  COMMAND ${CMAKE_COMMAND} -E make_directory ${digits_out}
  COMMAND ${CMAKE_COMMAND} -E copy ${digits_src}/thaw.yaml ${digits_src}/app.py ${digits_out}
  DEPENDS ${digits_src}/thaw.yaml ${digits_src}/app.py
  VERBATIM)
add_custom_target(digits_torch ALL DEPENDS ${digits_out}/model.pt ${digits_testdata}
                                           ${digits_out}/thaw.yaml ${digits_out}/app.py)
add_dependencies(integration_tests digits_torch)

# examples/digits-torch-batched: the same handler and model.pt, deployed with `batch:`.
set(digits_batched_out ${CMAKE_BINARY_DIR}/examples/digits-torch-batched)
add_custom_command(OUTPUT ${digits_batched_out}/thaw.yaml ${digits_batched_out}/app.py
                          ${digits_batched_out}/model.pt
  COMMAND ${CMAKE_COMMAND} -E make_directory ${digits_batched_out}
  COMMAND ${CMAKE_COMMAND} -E copy ${CMAKE_SOURCE_DIR}/examples/digits-torch-batched/thaw.yaml
          ${digits_src}/app.py ${digits_out}/model.pt ${digits_batched_out}
  DEPENDS ${CMAKE_SOURCE_DIR}/examples/digits-torch-batched/thaw.yaml ${digits_src}/app.py
          ${digits_out}/model.pt
  VERBATIM)
add_custom_target(digits_torch_batched ALL DEPENDS ${digits_batched_out}/thaw.yaml
                                                   ${digits_batched_out}/app.py
                                                   ${digits_batched_out}/model.pt)
# The shared inputs (data, model.pt) are made by digits_torch alone: one rule, never two at once.
add_dependencies(digits_torch_batched digits_torch)
add_dependencies(integration_tests digits_torch_batched)

# examples/digits-torch-store: the same app with its model in the model store. The bundle is
# code only; the model goes to digits-torch-model/, which `thaw models push` uploads.
set(digits_store_out ${CMAKE_BINARY_DIR}/examples/digits-torch-store)
set(digits_model_out ${CMAKE_BINARY_DIR}/examples/digits-torch-model)
add_custom_command(OUTPUT ${digits_store_out}/thaw.yaml ${digits_store_out}/app.py
                          ${digits_model_out}/model.pt
  COMMAND ${CMAKE_COMMAND} -E make_directory ${digits_store_out} ${digits_model_out}
  COMMAND ${CMAKE_COMMAND} -E copy ${CMAKE_SOURCE_DIR}/examples/digits-torch-store/thaw.yaml
          ${digits_src}/app.py ${digits_store_out}
  COMMAND ${CMAKE_COMMAND} -E copy ${digits_out}/model.pt ${digits_model_out}
  DEPENDS ${CMAKE_SOURCE_DIR}/examples/digits-torch-store/thaw.yaml ${digits_src}/app.py
          ${digits_out}/model.pt
  VERBATIM)
add_custom_target(digits_torch_store ALL DEPENDS ${digits_store_out}/thaw.yaml
                                                 ${digits_store_out}/app.py
                                                 ${digits_model_out}/model.pt)
add_dependencies(digits_torch_store digits_torch)
add_dependencies(integration_tests digits_torch_store)
