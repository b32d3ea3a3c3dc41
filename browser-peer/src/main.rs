//! Mounts the browser peer's Yew app on the page's `<body>`.

fn main() {
    yew::Renderer::<browser_peer::app::App>::new().render();
}
