# examples/tiny-chat and examples/tiny-embed, built by `make build` into
# build/examples/tiny-chat/ and build/examples/tiny-embed/ (thaw.yaml, app.py, model.pt: the
# bundles scripts/run.sh deploys). fetch_fortunes.sh takes the text out of Debian's fortunes-min
# .deb; train.py trains one character-level model with Debian's python3-torch (about a minute)
# and writes it twice: as a next-character predictor for tiny-chat and as a text encoder for
# tiny-embed. Included from the top-level CMakeLists.txt after tests/, since it makes
# integration_tests depend on the bundles.
set(tiny_src ${CMAKE_SOURCE_DIR}/examples/tiny-chat)
set(tiny_embed_src ${CMAKE_SOURCE_DIR}/examples/tiny-embed)
set(tiny_chat_out ${CMAKE_BINARY_DIR}/examples/tiny-chat)
set(tiny_embed_out ${CMAKE_BINARY_DIR}/examples/tiny-embed)
set(tiny_corpus ${CMAKE_BINARY_DIR}/examples/tiny-chat-data/fortunes.txt)

add_custom_command(OUTPUT ${tiny_corpus}
  COMMAND ${tiny_src}/fetch_fortunes.sh ${CMAKE_BINARY_DIR}/examples/tiny-chat-data/deb
          ${tiny_corpus}
  DEPENDS ${tiny_src}/fetch_fortunes.sh
  COMMENT "tiny-chat: fetching the fortunes from Debian's fortunes-min package"
  VERBATIM)
add_custom_command(OUTPUT ${tiny_chat_out}/model.pt ${tiny_embed_out}/model.pt
  COMMAND ${CMAKE_COMMAND} -E make_directory ${tiny_chat_out} ${tiny_embed_out}
  COMMAND ${THAW_TORCH_PYTHON} ${tiny_src}/train.py ${tiny_corpus} ${tiny_chat_out}/model.pt
          ${tiny_embed_out}/model.pt
  DEPENDS ${tiny_src}/train.py ${tiny_corpus}
  COMMENT "tiny-chat: training the character-level model (about a minute)"
  VERBATIM)
add_custom_command(OUTPUT ${tiny_chat_out}/thaw.yaml ${tiny_chat_out}/app.py
                          ${tiny_embed_out}/thaw.yaml ${tiny_embed_out}/app.py
  COMMAND ${CMAKE_COMMAND} -E make_directory ${tiny_chat_out} ${tiny_embed_out}
  COMMAND ${CMAKE_COMMAND} -E copy ${tiny_src}/thaw.yaml ${tiny_src}/app.py ${tiny_chat_out}
  COMMAND ${CMAKE_COMMAND} -E copy ${tiny_embed_src}/thaw.yaml ${tiny_embed_src}/app.py
          ${tiny_embed_out}
  DEPENDS ${tiny_src}/thaw.yaml ${tiny_src}/app.py ${tiny_embed_src}/thaw.yaml
          ${tiny_embed_src}/app.py
  VERBATIM)
add_custom_target(tiny_models ALL
  DEPENDS ${tiny_chat_out}/model.pt ${tiny_embed_out}/model.pt ${tiny_chat_out}/thaw.yaml
          ${tiny_chat_out}/app.py ${tiny_embed_out}/thaw.yaml ${tiny_embed_out}/app.py)
add_dependencies(integration_tests tiny_models)
