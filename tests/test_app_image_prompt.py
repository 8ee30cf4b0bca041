"""The web app's image prompt, in headless Chromium: a reference image, a box typed on it and a class name give a
class by example (the library's `VisualPrompt`), detected beside a typed text class in one vocabulary.

The demo model has no image-prompt encoder: the app is started with a tiny random CLIP vision tower
(`--vision-model`), so the example class's scores mean nothing; the test checks the flow (the class is in the
vocabulary and detected at score threshold 0) and that the box reaches the prompt (a box off the image is refused).
"""

from __future__ import annotations

import json
import urllib.request

import cv2
import numpy as np
from test_app import DEMO, running_app, wait_for
from test_visual_prompts import save_tower

from yoloworld.data.synth import SynthConfig, draw_image


def draw(path, seed: int):
    image, objects = draw_image(np.random.default_rng(seed), SynthConfig(min_side=256, max_side=256, max_objects=3))
    cv2.imwrite(str(path), image)
    return objects


def typed(driver, element_id: str, text: str) -> None:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.CSS_SELECTOR, f"#{element_id} textarea, #{element_id} input")
    box.clear()
    box.send_keys(text)


def clicked_box(driver, *corners) -> None:
    """Click `corners` (pixels of the 256x256 reference) on the displayed reference image; its box field must then
    hold the box they span."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    picture = driver.find_element(By.CSS_SELECTOR, "#reference-image img")
    field = driver.find_element(By.CSS_SELECTOR, "#reference-box textarea, #reference-box input")
    shown = picture.size["width"] / 256  # displayed pixels per image pixel (shown whole, aspect kept)
    for x, y in corners:  # offsets from the element's centre
        ActionChains(driver).move_to_element_with_offset(picture, (x - 128) * shown, (y - 128) * shown).click().perform()
        wait_for(lambda: field.get_attribute("value").count(",") in (1, 3), what="the clicked corner")
    values = wait_for(lambda: [float(v) for v in field.get_attribute("value").split(",")]
                      if field.get_attribute("value").count(",") == 3 else None, what="the clicked box")
    expected = (*corners[0], *corners[1])
    assert all(abs(got - want) <= 3 for got, want in zip(values, expected)), (values, expected)


def test_the_page_detects_a_class_given_by_a_reference_image_and_a_box(tmp_path):
    from browser import ensure_chromium, headless_chrome
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    draw(tmp_path / "target.png", seed=7)
    reference = draw(tmp_path / "reference.png", seed=8)[0]
    box = ",".join(str(int(round(v))) for v in reference.box)
    tower = save_tower(tmp_path / "clip-vision")
    driver = headless_chrome(*ensure_chromium())
    with running_app(tmp_path, "--weights", DEMO, "--vision-model", tower) as url:
        try:
            driver.get(url)
            wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#classes textarea, #classes input"))
            typed(driver, "classes", "red circle")
            for element, image in (("input-image", "target.png"), ("reference-image", "reference.png")):
                driver.find_element(By.CSS_SELECTOR, f"#{element} input[type=file]").send_keys(str(tmp_path / image))
                wait_for(lambda e=element: driver.find_elements(By.CSS_SELECTOR, f"#{e} img"), what=f"{image}")
            clicked_box(driver, (40, 30), (200, 150))  # the box drawn with two clicks on the picture
            typed(driver, "reference-box", box)  # then the exact box of the shape typed over it
            typed(driver, "reference-name", "my shape")
            score = driver.find_element(By.CSS_SELECTOR, "#score input[type=number]")
            score.send_keys(Keys.CONTROL, "a")
            score.send_keys("0", Keys.TAB)
            driver.find_element(By.ID, "detect").click()
            summary = driver.find_element(By.CSS_SELECTOR, "#summary textarea, #summary input")
            text = wait_for(lambda: summary.get_attribute("value"), what="the detections summary")
            link = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#downloads a"), what="the JSON")[0]
            records = json.loads(urllib.request.urlopen(link.get_attribute("href"), timeout=30).read())
            names = {d["class_name"] for d in records[0]["detections"]}
            assert names == {"red circle", "my shape"}, (names, text)  # text and image prompt in one vocabulary

            typed(driver, "reference-box", "300,300,400,400")  # off the 256-pixel reference
            driver.find_element(By.ID, "detect").click()
            page = driver.find_element(By.TAG_NAME, "body")
            wait_for(lambda: "box 300,300,400,400 lies outside" in page.get_attribute("textContent"),
                     what="the one-line error message on the page")
        finally:
            driver.quit()


def test_two_clicks_on_the_reference_draw_its_box():
    from yoloworld.app.session import box_from_clicks

    first = box_from_clicks("", 120, 40)
    assert first == "120, 40"
    assert box_from_clicks(first, 20, 90) == "20, 40, 120, 90"  # corners in either order
    assert box_from_clicks("20, 40, 120, 90", 5, 6) == "5, 6"  # a third click starts a new box
    assert box_from_clicks("not, numbers", 5, 6) == "5, 6"


def test_image_prompt_fields_are_checked_with_one_line_messages():
    import pytest

    from yoloworld.app.session import image_prompt
    from yoloworld.errors import InputError

    reference = np.zeros((64, 80, 3), np.uint8)
    prompt = image_prompt(reference, " 10, 5, 40, 60 ", " my mug ")
    assert prompt.name == "my mug" and prompt.references[0][1] == (10.0, 5.0, 40.0, 60.0)
    assert image_prompt(None, "", "") is None and image_prompt(reference, "", "cup").references[0][1] is None
    for args, message in (((None, "", "cup"), "upload a reference image"), ((reference, "", ""), "name the class"),
                          ((reference, "1,2,3", "cup"), "is not x1,y1,x2,y2"),
                          ((reference, "0,0,90,10", "cup"), "lies outside the 80x64 image")):
        with pytest.raises(InputError, match=message):
            image_prompt(*args)
